"""The `Backbone` interface, the per-backbone `BackboneConfig`, the registry and `layers` parsing.

Family modules (effnet.py, clip.py, dino.py, lowlevel.py, ...) describe each backbone with a
`BackboneConfig` and register a builder with `@register_backbone(config)`. A family that offers a whole
hub of models (open_clip, timm) registers a `BackboneFamily` instead: names under its prefix
("timm:NAME") are resolved to a config and a builder on first use. `lookup` serves both, so no code
elsewhere branches on backbone names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from ..errors import DeepfakeError

_INTERPOLATION = {
    "bicubic": transforms.InterpolationMode.BICUBIC,
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "nearest": transforms.InterpolationMode.NEAREST,
    "lanczos": transforms.InterpolationMode.LANCZOS,
    "box": transforms.InterpolationMode.BOX,
    "hamming": transforms.InterpolationMode.HAMMING,
}
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


class Backbone(nn.Module):
    """A frozen feature extractor: `preprocess` one RGB PIL image, `forward` a collated batch to (B, dim)."""

    name: str
    dim: int
    layers: str
    weights_id: str
    preprocessing: dict

    def preprocess(self, img: Image.Image):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def freeze(self, device: str | torch.device = "cpu") -> "Backbone":
        """Move to `device`, eval mode, no gradients: features are computed, never trained."""
        try:
            self.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise DeepfakeError(f"Cannot use device {device!r}: {exc}") from exc
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


def _geometry(config: BackboneConfig) -> list[Callable[[Image.Image], Image.Image]]:
    """The resize and crop (or pad) steps of `config`'s preprocessing, PIL in, PIL out."""
    if config.interpolation not in _INTERPOLATION:
        raise ValueError(f"unknown interpolation {config.interpolation!r}")
    if config.resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize_mode {config.resize_mode!r}")
    interp = _INTERPOLATION[config.interpolation]
    if config.resize_mode == "longest":
        # timm's crop_mode="border" / open_clip's resize_mode="longest": the whole image, padded
        return [partial(_fit_longest_and_pad, resize=config.resize, crop=config.input_size, interp=interp,
                        fill=config.fill)]
    target = config.resize if config.resize_mode == "shortest" else (config.resize, config.resize)
    return [transforms.Resize(target, interpolation=interp, antialias=True),
            transforms.CenterCrop(config.input_size)]


def make_transform(config: BackboneConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised CHW float tensor (resize per `resize_mode`, centre crop): deterministic."""
    tf = transforms.Compose(
        _geometry(config) + [
            transforms.ToTensor(),
            transforms.Normalize(config.mean, config.std),
        ]
    )

    def apply(img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        return tf(img)

    return apply


class SplitTransform:
    """`make_transform(config)` in two halves, for runners that decode in one process and run the model
    in another: `crop(img)` (resize + crop/pad) -> uint8 CHW tensor, a quarter of float32's bytes to
    ship; `normalize(x)` -> the float32 tensor of a uint8 (..., C, H, W) tensor or batch, on any device.
    On the CPU `normalize(crop(img)) == make_transform(config)(img)` bit for bit (the same operations).
    It holds only the config: no weights, cheap to pickle."""

    def __init__(self, config: BackboneConfig):
        self.config = config
        self._steps = None

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        self.config, self._steps = state["config"], None

    def crop(self, img: Image.Image) -> torch.Tensor:
        if self._steps is None:
            self._steps = transforms.Compose(_geometry(self.config))
        if img.mode != "RGB":
            img = img.convert("RGB")
        arr = np.array(self._steps(img), dtype=np.uint8, copy=True)  # HWC, as ToTensor reads it
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        # ToTensor's `.to(float32).div(255)`, then Normalize's `sub_(mean).div_(std)`
        x = x.to(dtype=torch.float32).div(255)
        mean = torch.as_tensor(self.config.mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        std = torch.as_tensor(self.config.std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        return x.sub_(mean).div_(std)


def _fit_longest_and_pad(img: Image.Image, resize: int, crop: int, interp, fill) -> Image.Image:
    """Scale so the longer side is `resize` (aspect kept), then centre-crop or pad to crop x crop."""
    w, h = img.size
    ratio = max(w, h) / resize
    img = transforms.functional.resize(img, [max(1, round(h / ratio)), max(1, round(w / ratio))],
                                       interpolation=interp, antialias=True)
    canvas = Image.new("RGB", (crop, crop), tuple(int(f) for f in fill))
    w, h = img.size
    # offsets as timm's CenterCropOrPad: pad evenly, crop around the centre (a negative offset crops)
    x = (crop - w) // 2 if w <= crop else -int(round((w - crop) / 2.0))
    y = (crop - h) // 2 if h <= crop else -int(round((h - crop) / 2.0))
    canvas.paste(img, (x, y))
    return canvas


class _StopForward(Exception):
    """Raised by the deepest needed hook so that blocks after it are not computed."""


class TowerBackbone(Backbone):
    """A pretrained network whose final embedding and/or pooled intermediate blocks form the features.

    Intermediate blocks are read with forward hooks; `pool_block` turns one block output into (B, C)
    (one function for all blocks, or one per block where blocks differ, e.g. a timm hybrid).
    When the final embedding is not requested, the forward pass stops after the deepest selected block.
    """

    def __init__(
        self,
        config: BackboneConfig,
        model: nn.Module,
        embed: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        blocks: Sequence[nn.Module],
        block_dims: Sequence[int],
        pool_block: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]],
        layers: str,
        weights_id: str,
    ):
        super().__init__()
        if len(blocks) != config.num_blocks or len(block_dims) != config.num_blocks:
            raise ValueError(f"{config.name}: expected {config.num_blocks} blocks, got {len(blocks)}")
        self.config = config
        self.name = config.name
        self.model = model
        self._embed = embed
        pools = list(pool_block) if isinstance(pool_block, (list, tuple)) else [pool_block] * len(blocks)
        self._pool_block = pools
        self._block_ids, self._want_last, self.layers = parse_layers(layers, config)
        self.dim = sum(block_dims[i] for i in self._block_ids) + (config.dim if self._want_last else 0)
        self.weights_id = weights_id
        self.preprocessing = config.preprocessing
        self._transform = make_transform(config)
        self._captured: dict[int, torch.Tensor] = {}
        deepest = max(self._block_ids) if self._block_ids else -1
        for i in self._block_ids:
            blocks[i].register_forward_hook(self._make_hook(i, stop=(i == deepest and not self._want_last)))

    def _make_hook(self, index: int, stop: bool):
        def hook(_module, _inputs, output):
            self._captured[index] = self._pool_block[index](output)
            if stop:
                raise _StopForward

        return hook

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return self._transform(img)

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, dtype=torch.float32)
        self._captured = {}
        last = None
        try:
            last = self._embed(self.model, x)
        except _StopForward:
            pass
        parts = [self._captured[i] for i in self._block_ids]
        self._captured = {}
        if self._want_last:
            if isinstance(last, (tuple, list)):  # towers that also return their tokens (CoCa)
                last = last[0]
            parts.append(last.reshape(x.shape[0], -1))
        return torch.cat([p.float() for p in parts], dim=1)


def pool_nchw(out: torch.Tensor) -> torch.Tensor:
    """Global average pool of a conv feature map (B, C, H, W) -> (B, C)."""
    return out.mean(dim=(2, 3))


def pool_patch_tokens(num_prefix_tokens: int, batch_first: bool = True):
    """Mean of a ViT block's patch tokens (class/prefix tokens excluded) -> (B, D)."""

    def pool(out: torch.Tensor) -> torch.Tensor:
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not batch_first:
            out = out.transpose(0, 1)
        return out[:, num_prefix_tokens:, :].mean(dim=1)

    return pool


def pool_any(num_chs: int, num_prefix_tokens: int = 0):
    """Pool one block of a model we did not write (timm, open_clip's timm towers) to (B, num_chs).

    Token outputs (B, N, C) average their patch tokens; feature maps average their spatial axes,
    whichever of NCHW / NHWC they use (the axis of size num_chs is the channel axis).
    """

    def pool(out: torch.Tensor) -> torch.Tensor:
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 4:
            return out.mean(dim=(2, 3)) if out.shape[1] == num_chs else out.mean(dim=(1, 2))
        if out.ndim == 3:
            if out.shape[-1] == num_chs:
                return out[:, num_prefix_tokens:, :].mean(dim=1)
            return out.mean(dim=2)
        if out.ndim == 2:
            return out
        raise DeepfakeError(f"Cannot pool a block output of shape {tuple(out.shape)} to {num_chs} channels.")

    return pool
