"""The `Backbone` interface, the per-backbone `BackboneConfig`, the registry and `layers` parsing.

Family modules (effnet.py, clip.py, dino.py, lowlevel.py, ...) describe each backbone with a
`BackboneConfig` and register a builder with `@register_backbone(config)`. A family that offers a whole
hub of models (open_clip, timm) registers a `BackboneFamily` instead: names under its prefix
("timm:NAME") are resolved to a config and a builder on first use. `lookup` serves both, so no code
elsewhere branches on backbone names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import DeepfakeError

RESIZE_MODES = ("shortest", "squash", "longest")


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's pretrained weights come from and where we look for them locally."""

    file_name: str  # the file a user has to supply (also the cache file name)
    url: str  # where to get it (shown in the error message, used to download)
    env_var: str  # environment variable that may point at a local copy
    # where a URL download lands and a copy is looked for: "torch_hub" (torch.hub.get_dir()/checkpoints),
    # "clip" (open_clip's ~/.cache/clip, then torch hub) or "package"; the Hugging Face cache is searched
    # first whenever hf_repo is set
    cache: str = "torch_hub"
    hf_repo: str | None = None  # Hugging Face repo holding an equivalent file (preferred for downloads)
    hf_files: tuple[str, ...] = ()  # candidate file names in that repo, preferred first
    remote_name: str = ""  # what the file is called where `url` points, when that differs from file_name

    @property
    def download_name(self) -> str:
        return self.remote_name or self.file_name


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that defines a backbone except its code: sizes, preprocessing, weights and layers."""

    name: str
    dim: int  # output dim for layers="last"
    description: str
    input_size: int = 224
    resize: int = 256  # shorter side is resized to this, then a centre crop of input_size (see resize_mode)
    interpolation: str = "bicubic"
    # "shortest": as above; "squash": both sides to `resize` (aspect ratio lost), then the crop;
    # "longest": the longer side to `resize`, then crop or pad with `fill` (0-255 RGB)
    resize_mode: str = "shortest"
    fill: tuple[int, int, int] = (0, 0, 0)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    weights: WeightsSource | None = None  # None: the backbone has no weights (lowlevel)
    num_blocks: int = 0  # intermediate blocks selectable with `layers` (0: only "last")
    early: tuple[int, ...] = ()  # block indices that layers="early" resolves to
    block_pooling: str = ""  # how an intermediate block's activation becomes a vector (documented in list)

    @property
    def preprocessing(self) -> dict:
        pre = {
            "input_size": self.input_size,
            "resize": self.resize,
            "crop": self.input_size,
            "interpolation": self.interpolation,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }
        # only recorded when not the default, so feature files written before these keys existed
        # keep the same compatibility key
        if self.resize_mode != "shortest":
            pre["resize_mode"] = self.resize_mode
        if self.resize_mode == "longest":
            pre["fill"] = [int(f) for f in self.fill]
        return pre

    @property
    def source(self) -> str:
        if self.weights is None:
            return "none (computed, no weights)"
        return self.weights.url


BuilderFn = Callable[..., "Backbone"]


@dataclass
class _Entry:
    config: BackboneConfig
    builder: BuilderFn = field(repr=False)


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(config: BackboneConfig):
    """Decorator: register `builder(config, weights_path, layers) -> Backbone` under config.name."""

    def deco(builder: BuilderFn) -> BuilderFn:
        if config.name in _REGISTRY:
            raise ValueError(f"backbone {config.name!r} registered twice")
        if "+" in config.name or ":" in config.name:
            raise ValueError("backbone names may not contain '+' (it joins combinations) or ':' (family prefixes)")
        _REGISTRY[config.name] = _Entry(config, builder)
        return builder

    return deco


@dataclass(frozen=True)
class CatalogRow:
    """One model a family offers, described without building it (for `deepfake backbones --all`)."""

    name: str
    weights: WeightsSource
    dim: int | None = None  # None where only building the model would tell
    input_size: int | None = None
    description: str = ""


@dataclass(frozen=True)
class BackboneFamily:
    """A hub of models addressed as `prefix + spec` (e.g. "timm:" + "resnet18.a1_in1k").

    `resolve(spec)` returns the config (its `name` is the canonical full name) and the builder, and
    raises DeepfakeError for a spec the hub does not know; `catalog()` lists what the hub offers.
    Both import the hub's library lazily, so listing registered backbones stays fast.
    """

    prefix: str
    syntax: str  # shown in messages, e.g. "timm:NAME[.TAG]"
    resolve: Callable[[str], tuple[BackboneConfig, BuilderFn]] = field(repr=False)
    catalog: Callable[[], Iterable[CatalogRow]] = field(repr=False)
    # resolved entries are kept for the process (a hub's configs never change); a family whose names
    # point at files that may be rewritten meanwhile (finetuned:PATH) sets this False
    cache_resolved: bool = True


_FAMILIES: dict[str, BackboneFamily] = {}
_RESOLVED: dict[str, _Entry] = {}  # family names resolved so far (resolving imports and meta-builds)


def register_family(family: BackboneFamily) -> BackboneFamily:
    if not family.prefix.endswith(":") or family.prefix in _FAMILIES:
        raise ValueError(f"family prefix {family.prefix!r} must end with ':' and be registered once")
    _FAMILIES[family.prefix] = family
    return family


def lookup(name: str) -> _Entry:
    """The entry of one (non-combined) backbone: registered, or resolved by its family's prefix."""
    name = str(name).strip()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _RESOLVED:
        return _RESOLVED[name]
    for prefix, family in _FAMILIES.items():
        if name.startswith(prefix):
            config, builder = family.resolve(name[len(prefix):].strip())
            if "+" in config.name:
                raise DeepfakeError(f"Backbone {config.name!r} contains '+', which joins combinations.")
            entry = _Entry(config, builder)
            if family.cache_resolved:
                _RESOLVED[name] = _RESOLVED[config.name] = entry
            return entry
    known = ", ".join(sorted(_REGISTRY))
    hubs = ", ".join(f.syntax for f in _FAMILIES.values())
    raise DeepfakeError(
        f"Unknown backbone {name!r}: known backbones are {known}, or any of {hubs} "
        "(see `deepfake backbones --all`; join several with '+')."
    )


def default_early(num_blocks: int) -> tuple[int, ...]:
    """Blocks that layers="early" picks when a family does not say: about 1/12, 3/12, 5/12 of the depth
    (1, 3, 5 of a 12-block ViT), or the first half of a short stack of CNN stages."""
    if num_blocks <= 0:
        return ()
    if num_blocks <= 6:
        return tuple(range(max(1, num_blocks // 2)))
    return tuple(sorted({min(num_blocks - 1, round(num_blocks * k / 12)) for k in (1, 3, 5)}))


def parse_layers(spec: str, config: BackboneConfig) -> tuple[list[int], bool, str]:
    """Resolve a `layers` spec to (block indices, include final embedding?, canonical spec string).

    "last": the final embedding; "early": the family's early blocks; "all": every block plus the final
    embedding; "i,j,..." block indices (0-based), optionally with "last" among them.
    """
    spec_in = str(spec).strip().lower() if spec is not None else "last"
    n = config.num_blocks
    if n == 0:
        valid = '"last" (it has no intermediate blocks)'
    else:
        valid = f'"last", "early", "all", or comma-separated block indices 0-{n - 1} (optionally with "last")'
    if spec_in in ("", "last"):
        return [], True, "last"
    if n and spec_in == "early":
        ids, last = list(config.early), False
    elif n and spec_in == "all":
        ids, last = list(range(n)), True
    elif n:
        ids, last = [], False
        for tok in spec_in.split(","):
            tok = tok.strip()
            if tok == "last":
                last = True
            elif tok.isdigit() and int(tok) < n:
                ids.append(int(tok))
            else:
                raise DeepfakeError(f"Invalid layers {spec!r} for backbone {config.name}: valid are {valid}.")
        ids = sorted(set(ids))
    else:
        raise DeepfakeError(f"Invalid layers {spec!r} for backbone {config.name}: valid is {valid}.")
    canonical = ",".join([str(i) for i in ids] + (["last"] if last else []))
    return ids, last, canonical


# The model side (torch, torchvision) lives in `_tower.py`, imported on first use: configs, the registry
# and `list_backbones()` load no torch, so `deepfake backbones` answers at once.
_TOWER_NAMES = ("Backbone", "TowerBackbone", "make_transform", "SplitTransform", "pool_nchw", "pool_patch_tokens",
                "pool_any")


def __getattr__(name: str):
    if name in _TOWER_NAMES:
        from . import _tower

        return getattr(_tower, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
