"""Weight-free low-level cues: frequency spectrum, colour statistics and noise-residual statistics.

Generators leave traces in exactly these places (up-sampling peaks and missing high frequencies in the
spectrum, shifted colour distributions, unnatural sensor-noise residuals), and they cost no weights.
All computed in torch on a batch, so they run on the same device and batching path as the networks.
"""

from __future__ import annotations

from pathlib import Path

from .base import BackboneConfig, register_backbone

SIZE = 256
N_RADIAL = 32  # radial bins of the azimuthally averaged power spectrum, up to Nyquist
N_HIST = 16  # bins of the grey noise-residual histogram
HIST_RANGE = 0.06  # residual values (in [0,1] intensity units) beyond +-this fall in the end bins
N_COLOUR = 6 * 4  # (R, G, B, Y, Cb, Cr) x (mean, std, skewness, excess kurtosis)
N_RESID = 3 * 3 + N_HIST + 2  # per RGB (std, mean |r|, kurtosis) + grey histogram + lag-1 autocorr (x, y)
DIM = N_RADIAL + N_COLOUR + N_RESID

LOWLEVEL = BackboneConfig(
    name="lowlevel",
    dim=DIM,
    description=f"Weight-free cues ({DIM}-d): {N_RADIAL}-bin azimuthal log power spectrum of the grey image, "
    "RGB/YCbCr mean, std, skewness, kurtosis, and median-filter noise-residual statistics.",
    input_size=SIZE,
    resize=SIZE,
    interpolation="bicubic",
    mean=(0.0, 0.0, 0.0),  # features are computed on raw [0, 1] intensities
    std=(1.0, 1.0, 1.0),
    weights=None,
)

@register_backbone(LOWLEVEL)
def build_lowlevel(config: BackboneConfig, weights_path: Path | None, layers: str) -> "LowLevelCues":
    from ._lowlevel import LowLevelCues

    return LowLevelCues(config, layers)


def __getattr__(name: str):
    # the torch side lives in _lowlevel.py, loaded on first use: registering this backbone loads no torch
    if name in ("LowLevelCues", "_moments", "_median3"):
        from . import _lowlevel

        return getattr(_lowlevel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
