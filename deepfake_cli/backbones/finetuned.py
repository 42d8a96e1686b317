"""Networks fine-tuned end to end by `deepfake finetune` (the study's Approach 1), used as backbones.

`deepfake finetune` trains an ImageNet CNN with a two-class layer on labelled images and then splits
it: the trunk (everything up to the pooled features) is written to a `.safetensors` file, the
classification layer becomes an ordinary model file. `finetuned:PATH` names that trunk as a backbone,
so `extract`, `eval` and `predict` treat a fine-tuned CNN like any frozen backbone + classifier.

This module also holds what `finetune` needs to know about each trainable architecture (`ARCHS`):
how to build it without its ImageNet classifier, where its pretrained weights come from (the same
lookup as every backbone: --weights, environment variable, local cache, hub), its default
preprocessing, and its blocks for `--layers`.

A trunk file is safetensors (tensors only, nothing executable) whose header metadata holds
`format`, `format_version` and `meta` (JSON: `arch`, `dim`, `preprocessing`, and what made it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DeepfakeError
from .base import BackboneConfig, BackboneFamily, WeightsSource, register_family
from .effnet import EFFNET_LITE0
from .weights import env_var_for, load_into, read_state_dict, strip_prefixes, weights_id

PREFIX = "finetuned:"
FORMAT = "deepfake-cli/finetuned-trunk"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _torchvision_source(name: str, file_name: str, dim: int) -> BackboneConfig:
    """The torchvision ImageNet weights of a ResNet, found like any backbone's (env var, torch hub cache, hub)."""
    return BackboneConfig(
        name=name, dim=dim, description=f"torchvision {name} (ImageNet-1k, IMAGENET1K_V1)",
        interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        weights=WeightsSource(file_name=file_name, url=f"https://download.pytorch.org/models/{file_name}",
                              env_var=env_var_for(name)),
        num_blocks=4, early=(0, 1), block_pooling="global average pool of the stage's feature map")


@dataclass(frozen=True)
class Arch:
    """A trainable architecture: its pretrained source, how to build its trunk and where its blocks are."""

    name: str
    source: BackboneConfig  # weights lookup, dim, mean/std, interpolation, blocks
    new_trunk: Callable[[], tuple[nn.Module, int]]  # the network without its ImageNet classifier, and its dim
    classifier_prefixes: tuple[str, ...]  # keys of the ImageNet classifier, dropped when loading
    blocks: Callable[[nn.Module], tuple[list[nn.Module], list[int]]]  # blocks for --layers, and their widths
    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # trunk, batch -> (B, dim) in eval mode


def _resnet(depth: int):
    def new() -> tuple[nn.Module, int]:
        import torchvision
        from torch import nn

        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        dim = model.fc.in_features
        model.fc = nn.Identity()
        return model, dim

    return new


def _resnet_blocks(model) -> tuple[list[nn.Module], list[int]]:
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    last = [s[-1] for s in stages]
    dims = [(b.conv3 if hasattr(b, "conv3") else b.conv2).out_channels for b in last]
    return stages, dims


def _new_effnet() -> tuple[nn.Module, int]:
    from efficientnet_lite_pytorch import EfficientNet
    from torch import nn

    model = EfficientNet.from_name("efficientnet-lite0")
    dim = model._fc.in_features
    model._fc = nn.Identity()  # forward: features -> pool -> dropout (training only) -> identity
    return model, dim


def _effnet_blocks(model) -> tuple[list[nn.Module], list[int]]:
    blocks = list(model._blocks)
    return blocks, [b._bn2.num_features for b in blocks]


def _effnet_embed(model, x: torch.Tensor) -> torch.Tensor:
    from ._tower import pool_nchw

    return pool_nchw(model.extract_features(x))


def _call(model, x: torch.Tensor) -> torch.Tensor:
    return model(x)


ARCHS: dict[str, Arch] = {
    "resnet50": Arch("resnet50", _torchvision_source("resnet50", "resnet50-0676ba61.pth", 2048), _resnet(50),
                     ("fc.",), _resnet_blocks, _call),
    "resnet18": Arch("resnet18", _torchvision_source("resnet18", "resnet18-f37072fd.pth", 512), _resnet(18),
                     ("fc.",), _resnet_blocks, _call),
    "effnet-lite0": Arch("effnet-lite0", EFFNET_LITE0, _new_effnet, ("_fc.",), _effnet_blocks, _effnet_embed),
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise DeepfakeError(f"Unknown architecture {name!r} for fine-tuning; choose from {', '.join(ARCHS)}.") from None


def load_pretrained(arch: Arch, trunk: nn.Module, path: Path) -> None:
    """Load an ImageNet weights file (with or without its classifier) into a trunk; strict otherwise."""
    sd = strip_prefixes(read_state_dict(path, arch.name), ("module.",))
    sd = {k: v for k, v in sd.items() if not k.startswith(arch.classifier_prefixes)}
    load_into(trunk, sd, path, arch.name)


def trunk_config(arch: Arch, size: int) -> BackboneConfig:
    """The config of `arch` fine-tuned at `size`: shorter side to `size`, centre crop `size`, the arch's
    mean/std and interpolation (`.preprocessing` is what the trunk file, its feature files and its model
    record; `base.make_transform(config)` is the matching deterministic preprocessing)."""
    return _config(arch, arch.name, size, size)


def _config(arch: Arch, name: str, input_size: int, resize: int, description: str = "") -> BackboneConfig:
    src = arch.source
    return BackboneConfig(
        name=name, dim=int(arch.source.dim), description=description or f"{arch.name} fine-tuned",
        input_size=int(input_size), resize=int(resize), interpolation=src.interpolation, mean=src.mean,
        std=src.std, weights=None, num_blocks=src.num_blocks, early=src.early, block_pooling=src.block_pooling)


# --- the trunk file ----------------------------------------------------------------------------------

def save_trunk(path: str | Path, arch: Arch, trunk: nn.Module, preprocessing: dict, meta: dict) -> Path:
    """Write the trunk's tensors and what made it as safetensors (tensors only; `path` is written as given,
    so callers wrap it in `safety.atomic.atomic_path`)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in trunk.state_dict().items()}
    header = dict(meta, arch=arch.name, dim=int(arch.source.dim), preprocessing=preprocessing)
    save_file(tensors, str(path), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                            "meta": json.dumps(header)})
    return Path(path)


def read_trunk_meta(path: str | Path) -> dict:
    """The JSON metadata of a trunk file (header only, no tensors read); DeepfakeError if it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DeepfakeError(f"No fine-tuned network at {path}: {PREFIX}PATH takes a .safetensors file written "
                            "by `deepfake finetune`.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any reader failure means: not a trunk file
        raise DeepfakeError(f"{path} is not a safetensors file written by `deepfake finetune` "
                            f"({type(exc).__name__}).") from None
    if header.get("format") != FORMAT:
        raise DeepfakeError(f"{path} is a safetensors file but not a network written by `deepfake finetune`.")
    if header.get("format_version") != str(FORMAT_VERSION):
        raise DeepfakeError(f"{path} has trunk format version {header.get('format_version')}; this deepfake-cli "
                            f"reads version {FORMAT_VERSION}.")
    try:
        meta = json.loads(header["meta"])
        get_arch(meta["arch"])
        meta["preprocessing"]["input_size"]
    except (KeyError, TypeError, ValueError):
        raise DeepfakeError(f"{path} has unreadable metadata for a fine-tuned network.") from None
    return meta


def backbone_name(path: str | Path) -> str:
    """The canonical backbone name of a trunk file (absolute path, so it means the same from any folder)."""
    return PREFIX + str(Path(path).expanduser().resolve())


def trunk_candidates(meta: dict, model_path: str | Path) -> list[Path]:
    """Where the trunk of a fine-tuned model's metadata `meta` may be, in the order tried: the path
    recorded relative to the model file (what `finetune` writes, so a model and its trunk move together),
    the absolute path of the backbone name (what older versions recorded), and a file of the same name
    beside the model."""
    folder = Path(model_path).expanduser().resolve().parent
    recorded = str(meta.get("backbone") or "")
    recorded = Path(recorded[len(PREFIX):]) if recorded.startswith(PREFIX) and "+" not in recorded else None
    rel = (meta.get("finetune") or {}).get("trunk_file")
    out = []
    if isinstance(rel, str) and rel and not Path(rel).is_absolute():
        out.append(folder / rel)
    if recorded is not None:
        out += [recorded, folder / recorded.name]
    return list(dict.fromkeys(out))


def locate_trunk(meta: dict, model_path: str | Path) -> str:
    """The backbone name a fine-tuned model loaded from `model_path` should use: the first candidate
    (`trunk_candidates`) that exists and has the recorded sha256 (`weights_id`); else the first that
    exists (predict then names the mismatch); else the recorded name unchanged (predict then says the
    network is missing; eval on feature files never needs it)."""
    recorded = str(meta.get("backbone"))
    found = list(dict.fromkeys(backbone_name(p) for p in trunk_candidates(meta, model_path) if p.is_file()))
    if recorded in found[:1] or len(found) == 1:  # the model did not move, or there is no choice to make:
        return found[0]                            # predict checks the sha256 anyway (no second hash of GBs)
    for name in found:
        try:
            if weights_id(name[len(PREFIX):]) == meta.get("weights_id"):
                return name
        except OSError:  # unreadable: try the next one
            continue
    return found[0] if found else recorded


def _config_of(path: Path) -> tuple[BackboneConfig, dict]:
    meta = read_trunk_meta(path)
    arch = get_arch(meta["arch"])
    pre = meta["preprocessing"]
    desc = (f"{arch.name} fine-tuned end to end by `deepfake finetune` ({meta.get('epochs', '?')} epochs at "
            f"{pre['input_size']}x{pre['input_size']}); {arch.source.dim}-d pooled features")
    cfg = _config(arch, backbone_name(path), pre["input_size"], pre.get("resize", pre["input_size"]), desc)
    if cfg.preprocessing != {k: v for k, v in pre.items() if k != "align"}:
        raise DeepfakeError(f"{path} records preprocessing {pre} that its architecture cannot reproduce.")
    return cfg, meta


def _build(config: BackboneConfig, weights_path, layers: str) -> TowerBackbone:
    path = Path(config.name[len(PREFIX):])
    # read the file again: it may have been rewritten since its name was first resolved in this process
    config, meta = _config_of(path)
    arch = get_arch(meta["arch"])
    trunk, _dim = arch.new_trunk()
    from safetensors.torch import load_file

    from ._tower import TowerBackbone, pool_nchw

    sd = load_file(str(path))
    load_into(trunk, sd, path, config.name)
    blocks, dims = arch.blocks(trunk)
    return TowerBackbone(config, trunk, arch.embed, blocks, dims, pool_nchw, layers, weights_id=weights_id(path))


def _resolve(spec: str):
    if not spec:
        raise DeepfakeError(f"{PREFIX}PATH needs the path of a .safetensors file written by `deepfake finetune`.")
    config, _meta = _config_of(Path(spec).expanduser())
    return config, _build


def _catalog():
    return iter(())  # trunk files are wherever `finetune` wrote them; nothing to list


register_family(BackboneFamily(prefix=PREFIX, syntax=f"{PREFIX}PATH.safetensors (from `deepfake finetune`)",
                               resolve=_resolve, catalog=_catalog))

__all__ = ["ARCHS", "Arch", "PREFIX", "backbone_name", "get_arch", "load_pretrained", "locate_trunk",
           "read_trunk_meta", "save_trunk", "trunk_candidates", "trunk_config"]
