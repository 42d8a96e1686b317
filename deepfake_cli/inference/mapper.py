"""The mapper: a collated batch of backbone inputs -> a (B, dim) float32 feature array.

`BackboneSpec` says how to build the backbone, so a runner that keeps the model elsewhere (an actor
pool, another machine) can rebuild the same one there; `Mapper` runs a built one on a device.

The preprocessing is split where the backbone allows it (`backbones.split_preprocess`, every built-in
one does): readers apply `reader_preprocess` (resize + crop -> uint8, weight-free and picklable, a
quarter of float32's bytes to pass between processes or machines) and the mapper normalises on its own
device. Otherwise readers get the backbone's own `preprocess` (float) and the mapper takes it as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from deepfake_cli.errors import DeepfakeError


@dataclass(frozen=True)
class BackboneSpec:
    """Everything `create_backbone` needs, as plain data that pickles cheaply."""

    name: str
    weights: str | dict | None = None
    layers: str = "last"
    pretrained: bool = True

    def build(self, device: str | torch.device = "cpu"):
        from deepfake_cli.backbones import create_backbone

        return create_backbone(self.name, weights=self.weights, device=str(device), layers=self.layers,
                               pretrained=self.pretrained)


def model_backbone_spec(meta: dict, weights: str | dict | None) -> BackboneSpec:
    """The backbone a model's features came from (its metadata), with `weights` where they are pretrained."""
    # Random weights (speed runs) are rebuilt from their seed; a combination marks each member.
    pretrained = "random" not in str(meta.get("weights_id", "")).split("+")
    return BackboneSpec(meta["backbone"], weights if pretrained else None, meta.get("layers") or "last", pretrained)


def check_model_backbone(model, bb) -> None:
    """Refuse a built backbone whose weights or preprocessing differ from the ones `model` was trained with."""
    if bb.weights_id != model.meta.get("weights_id"):
        raise DeepfakeError(f"Model {model.name} was trained with {model.meta.get('backbone')} weights "
                            f"{model.meta.get('weights_id')}, but the weights found are {bb.weights_id}; "
                            "pass the model's weights with --weights.")
    pre = dict(bb.preprocessing, align=(model.meta.get("preprocessing") or {}).get("align"))
    if json.dumps(pre, sort_keys=True) != json.dumps(model.meta.get("preprocessing"), sort_keys=True):
        raise DeepfakeError(f"Model {model.name} was trained with preprocessing {model.meta.get('preprocessing')}, "
                            f"but backbone {bb.name} now preprocesses with {bb.preprocessing}.")


class Mapper:
    """Run a frozen backbone on batches: inference mode, float16 autocast on CUDA, float32 out."""

    def __init__(self, backbone, device: str | torch.device, spec: BackboneSpec | None = None):
        from deepfake_cli.backbones import split_preprocess

        self.backbone, self.device, self.spec = backbone, torch.device(device), spec
        self.split = split_preprocess(backbone)
        self.cuda = self.device.type == "cuda"
        if self.cuda:  # fixed input sizes: let cuDNN pick its fastest kernels once
            torch.backends.cudnn.benchmark = True

    @classmethod
    def from_spec(cls, spec: BackboneSpec, device: str | torch.device) -> "Mapper":
        return cls(spec.build(device), device, spec)

    @property
    def dim(self) -> int:
        return int(self.backbone.dim)

    @property
    def reader_preprocess(self):
        """What a reader applies to a decoded RGB image: the uint8 crop when split, else `preprocess`."""
        return self.split.crop if self.split is not None else self.backbone.preprocess

    def __call__(self, inputs) -> np.ndarray:
        """`inputs` as `reader.collate` makes them (None when no image of the batch was readable)."""
        if inputs is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            # pinned host memory (the runner's job on CUDA) makes the copy asynchronous
            x = to_device(inputs, self.device, non_blocking=self.cuda)
            if self.split is not None:
                x = self.split.normalize(x)
            if self.cuda:
                with torch.autocast("cuda", dtype=torch.float16):
                    feats = self.backbone(x)
            else:
                feats = self.backbone(x)
            return feats.float().cpu().numpy()


def to_device(batch, device, non_blocking: bool = False):
    """Move a tensor, or the tuple of tensors a combined backbone takes, to `device`."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device, non_blocking) for b in batch)
    return batch.to(device, non_blocking=non_blocking)
