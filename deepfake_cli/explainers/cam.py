"""Exact class activation for a CNN backbone whose feature is the global mean pool of its last feature map.

With margin(f) = w . f + b (explainers/head.py: reduce = identity, StandardScaler, linear classifier, all folded
into w and b) and f = mean over the h x w cells of the map F, the margin is a sum over cells:

    margin = sum_hw [ w . F_hw / (h w) + b / (h w) ]

The map is this per-cell term: the constant b is spread evenly over the cells (a choice: it keeps the map's
sum equal to the margin, and shifts every cell alike, so it moves no cell's rank), and the cells sum to the
model's margin exactly (up to float rounding). p_fake is the model's calibration of that margin: monotone, so
a larger sum is a larger p_fake.

The pre-pool map is captured during the same forward pass that gives the feature (`inference.embed`, as
`predict` runs it): EfficientNet-Lite through `extract_features` (what `backbones/effnet.py` pools), any other
network through the input of its last `AdaptiveAvgPool2d` (torchvision ResNets: the DINO ResNet-50, the
fine-tuned ResNets). A capture is trusted only after a probe pass shows the mean of the captured map equals
the backbone's feature; else the backbone has no exact path here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Capture:
    """Installs itself on a built backbone and keeps what the last forward pass produced (`taken`)."""

    kind = ""

    def __init__(self, bb):
        self.bb, self.taken = bb, None
        self._undo = []

    def attach(self) -> "Capture":
        raise NotImplementedError

    def detach(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def take(self):
        out, self.taken = self.taken, None
        return out

    def cells(self, captured, head) -> np.ndarray:
        """(B, h, w) float64 map over the model's grid of cells, in margin units."""
        raise NotImplementedError

    def check(self, features: torch.Tensor, captured) -> bool:
        """Does the captured tensor give back the backbone's own feature?"""
        raise NotImplementedError

    def probe(self) -> bool:
        """Run the backbone once on noise with the capture attached; True when the capture reproduces its feature."""
        size = int(self.bb.config.input_size)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(self.bb.device)
        self.attach()
        try:
            with torch.inference_mode():
                feats = self.bb(x)
                got = self.probe_taken = self.take()
                return got is not None and self.check(feats.float().cpu(), got)
        except Exception:  # a network that does not run the way the capture assumes: no exact path
            return False
        finally:
            self.detach()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.double().cpu(), b.double().cpu()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * (1 + float(b.abs().max()))))


class FeatureMapCapture(Capture):
    """The last feature map (B, C, h, w) before the global mean pool."""

    kind = "cam"

    def attach(self) -> "FeatureMapCapture":
        model = getattr(self.bb, "model", None)
        if model is None:
            raise ValueError("no network")
        if hasattr(model, "extract_features"):  # EfficientNet-Lite: the backbone pools extract_features' output
            original = model.extract_features

            def extract_features(*args, **kwargs):
                out = original(*args, **kwargs)
                self.taken = out.detach()
                return out

            model.extract_features = extract_features  # an instance attribute shadows the method
            self._undo.append(lambda: delattr(model, "extract_features"))
            return self
        pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        if not pools:
            raise ValueError("no global average pool")

        def hook(_module, inputs):
            self.taken = inputs[0].detach()

        handle = pools[-1].register_forward_pre_hook(hook)
        self._undo.append(handle.remove)
        return self

    def check(self, features, captured) -> bool:
        return captured.ndim == 4 and _close(captured.float().mean(dim=(2, 3)), features)

    def cells(self, captured, head) -> np.ndarray:
        F = captured.double().cpu().numpy()  # (B, C, h, w)
        n = F.shape[2] * F.shape[3]
        return (np.einsum("bchw,c->bhw", F, head.w) + head.b) / n


def cam_capture(bb) -> tuple[FeatureMapCapture | None, str]:
    """A verified capture of `bb`'s last feature map, or (None, why not)."""
    if getattr(bb, "_block_ids", None) or not getattr(bb, "_want_last", False):
        return None, "the features include intermediate blocks (layers other than last)"
    try:
        cap = FeatureMapCapture(bb)
        cap.attach().detach()
    except (ValueError, AttributeError) as exc:
        return None, f"backbone {bb.name} has no mean-pooled last feature map here ({exc})"
    if not cap.probe():
        return None, f"backbone {bb.name}'s feature is not the mean of a captured feature map"
    return cap, ""
