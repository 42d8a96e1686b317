"""The model side of a backbone: the `Backbone` module, `TowerBackbone` (final embedding and pooled
intermediate blocks), the preprocessing transforms and the block pooling functions.

Separate from `base.py` (configs, the registry, `layers` parsing) so that those load without torch;
`base` and the package re-export these names, imported on first use.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.decode import check_resize, shorter_side_size
from ..errors import DeepfakeError
from .base import RESIZE_MODES, BackboneConfig, parse_layers

# resize_mode "none": no resize, only the centre crop of input_size (`BackboneConfig.preprocessing` records it,
# so features made this way never mix with resized ones)
CROP_ONLY = "none"

# PIL's filters by the names configs use. The geometry below is torchvision's Resize / CenterCrop on PIL
# images, written with PIL alone (the same PIL calls, so the same pixels: tests/test_zoo.py and the pinned
# outputs compare them with torchvision bit for bit): importing torchvision costs 1.5 s, and scoring one
# image must not pay it.
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
             "hamming": Image.Resampling.HAMMING}


def _resize(img: Image.Image, size: int | tuple[int, int], resample) -> Image.Image:
    """torchvision `Resize(size)` on a PIL image: an int sets the shorter side (the longer one truncated as
    torchvision computes it), a pair is (height, width)."""
    w, h = img.size
    if isinstance(size, int):
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_h, new_w = size
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision `CenterCrop(size)` on a PIL image: a smaller side is first padded with black (0), the
    odd pixel on the right / bottom; then the centre, offsets rounded as torchvision rounds them."""
    w, h = img.size
    if size > w or size > h:
        left, top = ((size - w) // 2 if size > w else 0), ((size - h) // 2 if size > h else 0)
        canvas = Image.new(img.mode, (w + max(size - w, 0), h + max(size - h, 0)), 0)
        canvas.paste(img, (left, top))
        img = canvas
        w, h = img.size
        if (w, h) == (size, size):
            return img
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


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
    if config.interpolation not in _RESAMPLE:
        raise ValueError(f"unknown interpolation {config.interpolation!r}")
    if config.resize_mode == CROP_ONLY:
        # no resize: a centre crop of input_size at the image's own scale (UnivFD's published preprocessing);
        # torchvision's CenterCrop pads a smaller side with black (0) first, as that code does
        return [partial(_center_crop, size=config.input_size)]
    if config.resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize_mode {config.resize_mode!r}")
    resample = _RESAMPLE[config.interpolation]
    if config.resize_mode == "longest":
        # timm's crop_mode="border" / open_clip's resize_mode="longest": the whole image, padded
        return [partial(_fit_longest_and_pad, resize=config.resize, crop=config.input_size, resample=resample,
                        fill=config.fill)]
    target = config.resize if config.resize_mode == "shortest" else (config.resize, config.resize)
    return [partial(_check_budget, resize=config.resize, squash=config.resize_mode == "squash"),
            partial(_resize, size=target, resample=resample),
            partial(_center_crop, size=config.input_size)]


def _check_budget(img: Image.Image, resize: int, squash: bool) -> Image.Image:
    """The resize budget (`data.check_resize`) before the Resize that follows allocates its output."""
    w, h = img.size
    check_resize(w, h, *((resize, resize) if squash else shorter_side_size(w, h, resize)))
    return img


def make_transform(config: BackboneConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised CHW float tensor (resize per `resize_mode`, centre crop): deterministic.
    The operations of torchvision's Compose([Resize, CenterCrop, ToTensor, Normalize]), in `SplitTransform`'s
    two halves (so the two paths cannot drift apart)."""
    split = SplitTransform(config)

    def apply(img: Image.Image) -> torch.Tensor:
        return split.normalize(split.crop(img))

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
            self._steps = _geometry(self.config)
        if img.mode != "RGB":
            img = img.convert("RGB")
        for step in self._steps:
            img = step(img)
        arr = np.array(img, dtype=np.uint8, copy=True)  # HWC, as ToTensor reads it
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        # ToTensor's `.to(float32).div(255)`, then Normalize's `sub_(mean).div_(std)`
        x = x.to(dtype=torch.float32).div(255)
        mean = torch.as_tensor(self.config.mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        std = torch.as_tensor(self.config.std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        return x.sub_(mean).div_(std)


def _fit_longest_and_pad(img: Image.Image, resize: int, crop: int, resample, fill) -> Image.Image:
    """Scale so the longer side is `resize` (aspect kept), then centre-crop or pad to crop x crop."""
    w, h = img.size
    ratio = max(w, h) / resize
    new_h, new_w = max(1, round(h / ratio)), max(1, round(w / ratio))
    check_resize(w, h, new_w, new_h)
    img = _resize(img, (new_h, new_w), resample)
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
