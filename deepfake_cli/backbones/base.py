"""The `Backbone` interface, the per-backbone `BackboneConfig`, the registry decorator and `layers` parsing.

Family modules (effnet.py, clip.py, dino.py, lowlevel.py) describe each backbone with a `BackboneConfig`
and register a builder with `@register_backbone(config)`; `create_backbone` in `__init__` looks names up
here, so no code elsewhere branches on backbone names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from ..errors import DeepfakeError

_INTERPOLATION = {
    "bicubic": transforms.InterpolationMode.BICUBIC,
    "bilinear": transforms.InterpolationMode.BILINEAR,
}


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's pretrained weights come from and where we look for them locally."""

    file_name: str  # the file a user has to supply (also the cache file name)
    url: str  # where to get it (shown in the error message, used to download)
    env_var: str  # environment variable that may point at a local copy
    cache: str = "torch_hub"  # "torch_hub" (torch.hub.get_dir()/checkpoints), "clip" (HF + ~/.cache/clip), "package"
    hf_repo: str | None = None  # Hugging Face repo holding an equivalent file (CLIP)
    hf_files: tuple[str, ...] = ()  # candidate file names in that repo, preferred first


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that defines a backbone except its code: sizes, preprocessing, weights and layers."""

    name: str
    dim: int  # output dim for layers="last"
    description: str
    input_size: int = 224
    resize: int = 256  # shorter side is resized to this, then a centre crop of input_size
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    weights: WeightsSource | None = None  # None: the backbone has no weights (lowlevel)
    num_blocks: int = 0  # intermediate blocks selectable with `layers` (0: only "last")
    early: tuple[int, ...] = ()  # block indices that layers="early" resolves to
    block_pooling: str = ""  # how an intermediate block's activation becomes a vector (documented in list)

    @property
    def preprocessing(self) -> dict:
        return {
            "input_size": self.input_size,
            "resize": self.resize,
            "crop": self.input_size,
            "interpolation": self.interpolation,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

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
    """Decorator: register `builder(config, weights_path, pretrained, layers) -> Backbone` under config.name."""

    def deco(builder: BuilderFn) -> BuilderFn:
        if config.name in _REGISTRY:
            raise ValueError(f"backbone {config.name!r} registered twice")
        if "+" in config.name:
            raise ValueError("backbone names may not contain '+' (it joins combinations)")
        _REGISTRY[config.name] = _Entry(config, builder)
        return builder

    return deco


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


def make_transform(config: BackboneConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised CHW float tensor (resize shorter side, centre crop): deterministic."""
    if config.interpolation not in _INTERPOLATION:
        raise ValueError(f"unknown interpolation {config.interpolation!r}")
    tf = transforms.Compose(
        [
            transforms.Resize(config.resize, interpolation=_INTERPOLATION[config.interpolation], antialias=True),
            transforms.CenterCrop(config.input_size),
            transforms.ToTensor(),
            transforms.Normalize(config.mean, config.std),
        ]
    )

    def apply(img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        return tf(img)

    return apply


class _StopForward(Exception):
    """Raised by the deepest needed hook so that blocks after it are not computed."""


class TowerBackbone(Backbone):
    """A pretrained network whose final embedding and/or pooled intermediate blocks form the features.

    Intermediate blocks are read with forward hooks; `pool_block` turns one block output into (B, C).
    When the final embedding is not requested, the forward pass stops after the deepest selected block.
    """

    def __init__(
        self,
        config: BackboneConfig,
        model: nn.Module,
        embed: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        blocks: Sequence[nn.Module],
        block_dims: Sequence[int],
        pool_block: Callable[[torch.Tensor], torch.Tensor],
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
        self._pool_block = pool_block
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
            self._captured[index] = self._pool_block(output)
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
