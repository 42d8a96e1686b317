"""The torch side of the `lowlevel` backbone (see lowlevel.py for what it computes and its config)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DeepfakeError
from ._tower import Backbone, make_transform
from .base import BackboneConfig, parse_layers
from .lowlevel import DIM, HIST_RANGE, N_COLOUR, N_HIST, N_RADIAL, N_RESID, SIZE  # noqa: F401

_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float32
)


def _moments(x: torch.Tensor) -> torch.Tensor:
    """(B, C, N) -> (B, C, 4): mean, std, skewness, excess kurtosis (0 where the std is ~0)."""
    mean = x.mean(-1, keepdim=True)
    d = x - mean
    var = (d * d).mean(-1, keepdim=True)
    std = var.sqrt()
    ok = std > 1e-6
    safe = torch.where(ok, std, torch.ones_like(std))
    z = d / safe
    skew = torch.where(ok, (z**3).mean(-1, keepdim=True), torch.zeros_like(std))
    kurt = torch.where(ok, (z**4).mean(-1, keepdim=True) - 3.0, torch.zeros_like(std))
    return torch.cat([mean, std, skew, kurt], dim=-1)


# Devillard's 19-comparison median-of-9 network: exact, and on a batch of images far faster than
# sorting unfolded 3x3 patches (which dominated the whole backbone's time).
_MED9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
         (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def _median3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter of (B, C, H, W) with reflected borders."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    v = [p[..., i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for a, b in _MED9:
        v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
    return v[4]


class LowLevelCues(Backbone):
    """`lowlevel`: a fixed function of the pixels; `weights_id` is "none"."""

    def __init__(self, config: BackboneConfig, layers: str = "last"):
        super().__init__()
        self.config = config
        self.name = config.name
        _, _, self.layers = parse_layers(layers, config)
        self.dim = DIM
        self.weights_id = "none"
        self.preprocessing = config.preprocessing
        self._transform = make_transform(config)
        f = torch.fft.fftshift(torch.fft.fftfreq(SIZE))
        radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).flatten()
        # frequencies beyond Nyquist along the axes (the corners) are left out: they are not isotropic
        bins = torch.clamp((radius / 0.5 * N_RADIAL).long(), max=N_RADIAL)
        counts = torch.bincount(bins, minlength=N_RADIAL + 1)[:N_RADIAL].float()
        self.register_buffer("_bins", bins, persistent=False)
        self.register_buffer("_counts", counts, persistent=False)
        self.register_buffer("_window", torch.outer(torch.hann_window(SIZE), torch.hann_window(SIZE)), persistent=False)
        self.register_buffer("_ycbcr", _YCBCR.clone(), persistent=False)

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return self._transform(img)

    def _spectrum(self, grey: torch.Tensor) -> torch.Tensor:
        b = grey.shape[0]
        g = (grey - grey.mean(dim=(1, 2), keepdim=True)) * self._window
        power = torch.fft.fftshift(torch.fft.fft2(g).abs() ** 2, dim=(-2, -1)).reshape(b, -1) / g[0].numel()
        sums = torch.zeros(b, N_RADIAL + 1, device=grey.device).index_add_(1, self._bins, power)[:, :N_RADIAL]
        return torch.log10(sums / self._counts + 1e-10)

    def _residual(self, rgb: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        b = rgb.shape[0]
        res = rgb - _median3(rgb)
        flat = res.reshape(b, 3, -1)
        m = _moments(flat)
        per_channel = torch.cat([m[..., 1], flat.abs().mean(-1), m[..., 3]], dim=1)  # (B, 9)
        gres = (grey - _median3(grey[:, None])[:, 0]).reshape(b, -1)
        idx = ((gres.clamp(-HIST_RANGE, HIST_RANGE * (1 - 1e-6)) + HIST_RANGE) / (2 * HIST_RANGE) * N_HIST).long()
        offsets = torch.arange(b, device=idx.device)[:, None] * N_HIST
        hist = torch.bincount((idx + offsets).flatten(), minlength=b * N_HIST).reshape(b, N_HIST).float()
        hist = hist / idx.shape[1]
        r2 = gres.reshape(b, SIZE, SIZE)
        r2 = r2 - r2.mean(dim=(1, 2), keepdim=True)
        var = (r2 * r2).mean(dim=(1, 2)).clamp_min(1e-12)
        ac_x = (r2[:, :, 1:] * r2[:, :, :-1]).mean(dim=(1, 2)) / var
        ac_y = (r2[:, 1:, :] * r2[:, :-1, :]).mean(dim=(1, 2)) / var
        return torch.cat([per_channel, hist, ac_x[:, None], ac_y[:, None]], dim=1)

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        # fourth moments and log spectra need float32 even when the caller runs under fp16 autocast
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._features(batch)

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, dtype=torch.float32)
        if x.shape[-2:] != (SIZE, SIZE):
            raise DeepfakeError(f"lowlevel expects {SIZE}x{SIZE} inputs from its own preprocess, got {tuple(x.shape)}.")
        b = x.shape[0]
        ycc = torch.einsum("ij,bjhw->bihw", self._ycbcr, x)
        grey = ycc[:, 0]
        colour = _moments(torch.cat([x, ycc], dim=1).reshape(b, 6, -1)).reshape(b, -1)
        out = torch.cat([self._spectrum(grey), colour, self._residual(x, grey)], dim=1)
        return out.float()
