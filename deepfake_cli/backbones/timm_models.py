"""Any timm model as `timm:NAME[.TAG]` (e.g. `timm:vit_small_patch14_dinov2.lvd142m`).

Everything comes from timm: the architecture, the pretrained config of the tag (input size,
interpolation, mean/std, crop_pct and crop_mode, as `timm.data.resolve_model_data_config` reads them),
the weights' hub repo and URL, the output dim (the model's pooled pre-logits features), and the
intermediate blocks (`feature_info`: a ViT's `blocks`, a CNN's stages). A name without a tag means
timm's default tag, and the canonical name records it, so a feature file says which weights made it.
`build_model` is also what registered timm-based names (dinov2-vit-b14) use.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from pathlib import Path

from ..errors import DeepfakeError
from .base import BackboneConfig, BackboneFamily, CatalogRow, WeightsSource, default_early, register_family
from .weights import env_var_for, load_into, read_state_dict, strip_prefixes

PREFIX = "timm:"
_HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader tries, in its order
POOLING = "mean of patch tokens (prefix tokens excluded), or global average pool of a feature map"


def canonical_model_name(spec: str) -> str:
    """"resnet18" -> "resnet18.a1_in1k" (timm's default tag); unknown names and tags are refused."""
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(spec)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DeepfakeError(f"Unknown timm model {arch!r}{hint}; see `deepfake backbones --all --filter {PREFIX}`.")
    try:
        pcfg = get_pretrained_cfg(spec)
    except RuntimeError:
        from timm.models import get_arch_pretrained_cfgs

        tags = [n.split(".", 1)[1] for n in get_arch_pretrained_cfgs(arch) if "." in n]
        raise DeepfakeError(f"timm {arch} has no pretrained tag {tag!r}: its tags are {', '.join(tags) or 'none'}.") from None
    return f"{arch}.{pcfg.tag}" if pcfg is not None and pcfg.tag else arch


def _pretrained_cfg(model_name: str):
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(model_name)


def _safe_first(file: str) -> tuple[str, ...]:
    """A hub file name and the safetensors twin timm's loader tries before it."""
    twins = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    twin = twins.get(file) or (file[:-4] + ".safetensors" if file.endswith(".bin") else "")
    return tuple(f for f in (twin, file) if f)


def weights_source(name: str, model_name: str) -> WeightsSource:
    """Where timm would get the weights (the hub first, as timm does, else the URL) and where we look."""
    pcfg = _pretrained_cfg(model_name)
    repo = (pcfg.hf_hub_id or "").split("@")[0] if pcfg is not None else ""
    url = (pcfg.url or "") if pcfg is not None else ""
    hf_file = pcfg.hf_hub_filename if pcfg is not None else None
    hf_files = (_safe_first(hf_file) if hf_file else _HF_FILES) if repo else ()
    if url:  # timm's URL downloads land in torch hub's checkpoints under the URL's file name
        file_name = os.path.basename(url)
        shown = url + (f" (or {hf_files[0]} from hf.co/{repo})" if repo else "")
        remote = ""
    elif repo:  # hub-only: a local copy is named after the repo (the hub's file names are generic)
        file_name = f"{repo.replace('/', '--')}--{hf_files[0]}"
        shown, remote = f"https://huggingface.co/{repo}", hf_files[0]
    else:
        file_name, shown, remote = f"{model_name}.pth", "nowhere (timm lists no weights for it)", ""
    return WeightsSource(file_name=file_name, url=shown, env_var=env_var_for(name), cache="torch_hub",
                         hf_repo=repo or None, hf_files=hf_files, remote_name=remote)


def _create(model_name: str) -> "nn.Module":
    import timm

    # num_classes=0: the output is the pooled pre-logits features; pretrained=False: we load weights
    return timm.create_model(model_name, pretrained=False, num_classes=0)


def feature_blocks(model: "nn.Module") -> "tuple[list[nn.Module], list[int], list]":
    """A timm model's intermediate blocks as its `feature_info` names them, their widths and poolings."""
    from ._tower import pool_any

    info = getattr(model, "feature_info", None)
    info = getattr(info, "info", info)  # a FeatureInfo object or the plain list of dicts
    if not info:
        return [], [], []
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    try:
        blocks = [model.get_submodule(fi["module"]) for fi in info]
    except (AttributeError, KeyError):
        return [], [], []  # feature_info that names no module (hooks on submodule internals): "last" only
    dims = [int(fi["num_chs"]) for fi in info]
    return blocks, dims, [pool_any(d, prefix) for d in dims]


def _output_dim(model: "nn.Module", size: int) -> int:
    import torch

    try:  # the meta device runs the forward for shapes only: the truth, whatever the head does
        return int(model(torch.empty(1, 3, size, size, device="meta")).shape[-1])
    except Exception:  # noqa: BLE001 - an op without a meta kernel: fall back to what timm declares
        return int(getattr(model, "head_hidden_size", None) or model.num_features)


def make_config(name: str, model_name: str) -> BackboneConfig:
    """The config timm's files imply, from a model built on the meta device (no memory, no init)."""
    import torch
    from timm.data import resolve_model_data_config

    with torch.device("meta"):
        model = _create(model_name)
    data = resolve_model_data_config(model)
    _, h, w = data["input_size"]
    if h != w:
        raise DeepfakeError(f"timm {model_name} takes {h}x{w} images; only square inputs are supported.")
    crop_pct = data.get("crop_pct") or 0.875
    crop_mode = data.get("crop_mode") or "center"
    _, dims, _ = feature_blocks(model)
    dim = _output_dim(model, h)
    return BackboneConfig(
        name=name,
        dim=dim,
        description=f"timm {model_name} ({dim}-d pooled pre-logits features)."
        + (f" Blocks 0-{len(dims) - 1}: the outputs of its feature_info modules, pooled." if dims else ""),
        input_size=int(h),
        resize=int(math.floor(h / crop_pct)),  # as timm's eval transform: scale to size / crop_pct, crop
        interpolation=data.get("interpolation", "bicubic"),
        resize_mode={"center": "shortest", "squash": "squash", "border": "longest"}[crop_mode],
        fill=tuple(round(255 * m) for m in data["mean"]),  # timm pads "border" crops with the mean colour
        mean=tuple(float(m) for m in data["mean"]),
        std=tuple(float(s) for s in data["std"]),
        weights=weights_source(name, model_name),
        num_blocks=len(dims),
        early=default_early(len(dims)),
        block_pooling=POOLING if dims else "",
    )


def load_timm_weights(model: "nn.Module", model_name: str, path: Path, name: str) -> None:
    """Load a weights file the way timm would: its own state dict or the original release (e.g. Meta's
    DINOv2 .pth, Google's ViT .npz), converted by the model's checkpoint filter; the classifier is dropped."""
    if path.suffix == ".npz" and hasattr(model, "load_pretrained"):  # big_vision / JAX releases
        try:
            model.load_pretrained(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure means the file does not fit
            raise DeepfakeError(f"Weights file {path} does not fit {name}: {type(exc).__name__}: {exc}") from exc
        return
    sd = strip_prefixes(read_state_dict(path, name), ("module.",))
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is not None:  # timm applies it to every pretrained file it loads
        try:
            sd = convert(sd, model)
        except Exception:  # noqa: BLE001 - a file it cannot convert is judged by the strict load below
            pass
    pcfg = _pretrained_cfg(model_name)
    heads = pcfg.classifier if pcfg is not None and pcfg.classifier else ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    expected = model.state_dict()
    sd = {k: v for k, v in sd.items() if k in expected or not any(k.startswith(h + ".") for h in heads)}
    load_into(model, sd, path, name)


def _call(model, x):
    return model(x)


def build_model(config: BackboneConfig, weights_path: Path | None, layers: str, model_name: str) -> "TowerBackbone":
    from ._tower import TowerBackbone

    model = _create(model_name)
    if weights_path is not None:
        load_timm_weights(model, model_name, weights_path, config.name)
    blocks, dims, pools = feature_blocks(model)
    return TowerBackbone(config, model, _call, blocks, dims, pools, layers, weights_id="")


def _resolve(spec: str):
    model_name = canonical_model_name(spec)

    def build(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
        return build_model(config, weights_path, layers, model_name)

    return make_config(PREFIX + model_name, model_name), build


def _catalog():
    import timm

    for model_name in timm.list_models(pretrained=True):
        pcfg = _pretrained_cfg(model_name)
        size = pcfg.input_size if pcfg is not None else None
        name = PREFIX + model_name
        yield CatalogRow(name=name, weights=weights_source(name, model_name),
                         input_size=int(size[1]) if size and size[1] == size[2] else None,
                         description=f"timm {model_name}")


TIMM = register_family(BackboneFamily(prefix=PREFIX, syntax=f"{PREFIX}NAME[.TAG]", resolve=_resolve, catalog=_catalog))
