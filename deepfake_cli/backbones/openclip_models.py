"""Any open_clip image tower as `open_clip:ARCH/TAG` (e.g. `open_clip:ViT-L-14/openai`).

Everything comes from open_clip's own configs: the architecture from its model config, the
preprocessing (mean, std, interpolation, resize mode) and the weights' location from the pretrained
config of the tag, the image size from the built tower. Only the image tower is built here: the text
tower would double the build time for nothing (text.py builds it when prompts need it). `build_tower` is also what the registered CLIP names use.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ..errors import DeepfakeError
from .base import BackboneConfig, BackboneFamily, CatalogRow, WeightsSource, default_early, register_family
from .weights import env_var_for, load_into, read_state_dict, strip_prefixes

PREFIX = "open_clip:"
_HF_WEIGHTS = "open_clip_pytorch_model.bin"  # open_clip's default file in a hub repo
_HF_SAFE_WEIGHTS = "open_clip_model.safetensors"  # preferred over it when the repo has one


def split_spec(spec: str) -> tuple[str, str]:
    """"ViT-L-14/openai" -> ("ViT-L-14", "openai") with the tag normalised as open_clip does; checked."""
    import open_clip

    arch, sep, tag = spec.rpartition("/")
    if not sep or not arch or not tag:
        raise DeepfakeError(f"Backbone {PREFIX}{spec} must be {PREFIX}ARCH/TAG, e.g. {PREFIX}ViT-L-14/openai "
                            f"(see `deepfake backbones --all --filter {PREFIX}`).")
    if arch not in open_clip.list_models():
        raise DeepfakeError(f"Unknown open_clip architecture {arch!r} in {PREFIX}{spec} "
                            f"(see `deepfake backbones --all --filter {PREFIX}`).")
    tag = tag.lower().replace("-", "_")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise DeepfakeError(f"open_clip {arch} has no pretrained tag {tag!r}: its tags are "
                            f"{', '.join(tags) or 'none'}.")
    return arch, tag


def _model_cfg(arch: str) -> dict:
    import open_clip

    return copy.deepcopy(open_clip.get_model_config(arch))


def _pretrained_cfg(arch: str, tag: str) -> dict:
    import open_clip

    return dict(open_clip.get_pretrained_cfg(arch, tag))


def quick_gelu(arch: str, tag: str) -> bool:
    # OpenAI's weights were trained with QuickGELU: the tag says so even where the arch config does not
    return bool(_model_cfg(arch).get("quick_gelu") or _pretrained_cfg(arch, tag).get("quick_gelu"))


def weights_source(name: str, arch: str, tag: str) -> WeightsSource:
    """Where open_clip would get this tag's weights (hub preferred, as open_clip does), and where we look."""
    pcfg = _pretrained_cfg(arch, tag)
    url = pcfg.get("url") or ""
    # "org/repo/" (open_clip's default file) or "org/repo/file.bin", as open_clip's download_pretrained reads it
    repo, hf_file = os.path.split(pcfg.get("hf_hub") or "")
    hf_files: tuple[str, ...] = ()
    if repo:
        hf_file = hf_file or _HF_WEIGHTS
        safe = _HF_SAFE_WEIGHTS if hf_file == _HF_WEIGHTS else (
            hf_file[:-4] + ".safetensors" if hf_file.endswith((".bin", ".pth")) else "")
        hf_files = tuple(f for f in (safe, hf_file) if f)
    if url:  # a file of its own name (OpenAI's ViT-L-14.pt): open_clip's URL cache holds it under that name
        file_name, shown = os.path.basename(url), url + (f" (or {hf_files[0]} from hf.co/{repo})" if repo else "")
        remote = ""
    else:  # only in a hub repo, whose file names are generic: a local copy is named after the repo
        file_name = f"{repo.replace('/', '--')}--{hf_files[0]}"
        shown, remote = f"https://huggingface.co/{repo}", hf_files[0]
    return WeightsSource(file_name=file_name, url=shown, env_var=env_var_for(name), cache="clip",
                         hf_repo=repo or None, hf_files=hf_files, remote_name=remote)


def _build_visual(arch: str, tag: str) -> "nn.Module":
    from open_clip.model import _build_vision_tower

    mcfg = _model_cfg(arch)
    vision_cfg = dict(mcfg["vision_cfg"])
    vision_cfg.pop("timm_model_pretrained", None)  # a timm trunk must never fetch its own weights
    return _build_vision_tower(mcfg["embed_dim"], vision_cfg, quick_gelu=quick_gelu(arch, tag))


def _blocks(visual: "nn.Module") -> "tuple[list[nn.Module], list[int], list, str]":
    """The tower's intermediate blocks, their widths, how to pool each and how that is described
    (none where the tower has no stack we know)."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    from ._tower import pool_nchw, pool_patch_tokens

    if isinstance(visual, VisionTransformer):
        blocks = list(visual.transformer.resblocks)
        # one class token, first (open_clip's own forward_intermediates assumes the same)
        pool = pool_patch_tokens(1, batch_first=getattr(visual.transformer, "batch_first", True))
        return (blocks, [visual.transformer.width] * len(blocks), [pool] * len(blocks),
                "mean of patch tokens (class token excluded)")
    if isinstance(visual, ModifiedResNet):
        stages = [visual.layer1, visual.layer2, visual.layer3, visual.layer4]
        dims = [stage[-1].conv3.out_channels for stage in stages]
        return stages, dims, [pool_nchw] * len(stages), "global average pool of the stage's feature map"
    if isinstance(visual, TimmModel):
        from .timm_models import POOLING, feature_blocks

        return (*feature_blocks(visual.trunk), POOLING)
    return [], [], [], ""


def _image_size(visual: "nn.Module", arch: str) -> int:
    size = getattr(visual, "image_size", None) or _model_cfg(arch)["vision_cfg"].get("image_size", 224)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h != w:
        raise DeepfakeError(f"open_clip {arch} takes {h}x{w} images; only square inputs are supported.")
    return int(h)


def make_config(name: str, arch: str, tag: str) -> BackboneConfig:
    """The config open_clip's files imply, from a tower built on the meta device (no memory, no init)."""
    import torch

    with torch.device("meta"):
        visual = _build_visual(arch, tag)
    _, dims, _, block_pooling = _blocks(visual)
    size = _image_size(visual, arch)
    pcfg = _pretrained_cfg(arch, tag)
    interpolation = pcfg.get("interpolation", "bicubic")
    dim = int(_model_cfg(arch)["embed_dim"])
    return BackboneConfig(
        name=name,
        dim=dim,
        description=f"open_clip {arch} image embedding, {tag} weights ({dim}-d, not L2-normalised)."
        + (f" Blocks 0-{len(dims) - 1}: {block_pooling}." if dims else ""),
        input_size=size,
        resize=size,  # open_clip resizes to the input size (shortest side or both), then crops
        interpolation="bicubic" if interpolation == "random" else interpolation,
        resize_mode=pcfg.get("resize_mode", "shortest"),
        fill=(int(pcfg.get("fill_color", 0)),) * 3,
        mean=tuple(pcfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(pcfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        weights=weights_source(name, arch, tag),
        num_blocks=len(dims),
        early=default_early(len(dims)),
        block_pooling=block_pooling if dims else "",
    )


def _embed(model, x):
    return model(x)


def build_tower(config: BackboneConfig, weights_path: Path | None, layers: str, arch: str, tag: str,
                pre_projection: bool = False) -> "TowerBackbone":
    """The image tower of open_clip `arch` (with the activation `tag` was trained with), weights loaded.

    `pre_projection`: the final embedding is the pooled output before the projection (for OpenAI's ViTs the
    class token after `ln_post`, the tower's width wide) instead of the projected embedding."""
    from ._tower import TowerBackbone

    visual = _build_visual(arch, tag)
    if weights_path is not None:
        sd = strip_prefixes(read_state_dict(weights_path, config.name), ("module.",))
        if any(k.startswith("visual.") for k in sd):  # a whole CLIP (OpenAI or open_clip format)
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        load_into(visual, sd, weights_path, config.name)
    if pre_projection:
        drop_projection(visual, config.name)
    blocks, dims, pools, _ = _blocks(visual)
    return TowerBackbone(config, visual, _embed, blocks, dims, pools, layers, weights_id="")


def drop_projection(visual: "nn.Module", name: str) -> None:
    """Make an open_clip ViT tower return its pooled output before the projection: its forward multiplies
    by `proj` only when `proj` is not None (loaded first, so the checkpoint's `proj` is still checked)."""
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer) or getattr(visual, "proj", None) is None:
        raise DeepfakeError(f"Backbone {name}: the tower has no projection to leave out (only CLIP ViTs have one).")
    visual.proj = None


def _resolve(spec: str):
    arch, tag = split_spec(spec)
    name = f"{PREFIX}{arch}/{tag}"

    def build(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
        return build_tower(config, weights_path, layers, arch, tag)

    return make_config(name, arch, tag), build


def _catalog():
    import open_clip

    for arch, tag in open_clip.list_pretrained():
        name = f"{PREFIX}{arch}/{tag}"
        mcfg = open_clip.get_model_config(arch) or {}
        size = mcfg.get("vision_cfg", {}).get("image_size")
        yield CatalogRow(name=name, weights=weights_source(name, arch, tag), dim=mcfg.get("embed_dim"),
                         input_size=size if isinstance(size, int) else None,
                         description=f"open_clip {arch} ({tag})")


OPEN_CLIP = register_family(BackboneFamily(prefix=PREFIX, syntax=f"{PREFIX}ARCH/TAG", resolve=_resolve, catalog=_catalog))
