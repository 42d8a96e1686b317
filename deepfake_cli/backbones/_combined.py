"""Combined backbones (`a+b`: features side by side) and a built backbone's split preprocessing.

The torch side of the package, imported on first use (see `backbones/__init__.py`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import DeepfakeError
from ._tower import Backbone, SplitTransform
from .base import BackboneConfig


class CombinedBackbone(Backbone):
    """Several backbones side by side: preprocess gives one tensor per member, forward concatenates."""

    def __init__(self, members: list[Backbone]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.name = "+".join(m.name for m in members)
        self.dim = sum(m.dim for m in members)
        specs = [m.layers for m in members]
        self.layers = specs[0] if len(set(specs)) == 1 else "+".join(specs)
        self.weights_id = "+".join(m.weights_id for m in members)
        self.preprocessing = {
            "input_size": max(m.preprocessing["input_size"] for m in members),
            "members": [{"backbone": m.name, **m.preprocessing} for m in members],
        }

    def preprocess(self, img: Image.Image) -> tuple[torch.Tensor, ...]:
        return tuple(m.preprocess(img) for m in self.members)

    @torch.no_grad()
    def forward(self, batch) -> torch.Tensor:
        if len(batch) != len(self.members):
            raise DeepfakeError(f"{self.name} expects {len(self.members)} inputs per image, got {len(batch)}.")
        return torch.cat([m(x) for m, x in zip(self.members, batch)], dim=1)


class SplitPreprocess:
    """A built backbone's `preprocess` in two weight-free halves (see `base.SplitTransform`): `crop(img)`
    gives uint8 tensor(s) to ship between processes, `normalize(batch)` the float input of `forward`
    (a tuple, one per member, for a combination). Picklable: it holds only the configs."""

    def __init__(self, parts: list[SplitTransform], combined: bool):
        self.parts, self.combined = parts, combined

    def crop(self, img: Image.Image):
        out = tuple(p.crop(img) for p in self.parts)
        return out if self.combined else out[0]

    def normalize(self, batch):
        if self.combined:
            return tuple(p.normalize(x) for p, x in zip(self.parts, batch))
        return self.parts[0].normalize(batch)


def split_preprocess(backbone: Backbone) -> SplitPreprocess | None:
    """The backbone's preprocessing as `SplitPreprocess`, or None when a backbone preprocesses some other
    way than `make_transform` of its config (then only its own `preprocess` will do).

    Checked on a small probe image: `normalize(crop(img))` must equal `backbone.preprocess(img)` exactly."""
    members = list(backbone.members) if isinstance(backbone, CombinedBackbone) else [backbone]
    configs = [getattr(m, "config", None) for m in members]
    if not all(isinstance(c, BackboneConfig) for c in configs):
        return None
    split = SplitPreprocess([SplitTransform(c) for c in configs], isinstance(backbone, CombinedBackbone))
    probe = Image.fromarray(((np.arange(37 * 53 * 3, dtype=np.int64) * 7919) % 251).astype(np.uint8)
                            .reshape(37, 53, 3), "RGB")
    want = backbone.preprocess(probe)
    got = split.crop(probe)
    got = split.normalize(tuple(g[None] for g in got) if split.combined else got[None])
    want = want if split.combined else (want,)
    got = got if split.combined else (got,)
    same = all(w.shape == g[0].shape and torch.equal(w, g[0]) for w, g in zip(want, got))
    return split if same else None
