"""Backbone registry: `create_backbone(name)` and `list_backbones()` (timm/open_clip style).

Each family module registers its builders with `@register_backbone(BackboneConfig(...))`; names may be
joined with "+" to concatenate several backbones' features in that order.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image

from ..errors import DeepfakeError
from .base import _REGISTRY, Backbone, BackboneConfig, WeightsSource, parse_layers, register_backbone
from .weights import find_local, resolve_weights, weights_id

# importing the family modules registers their backbones
from . import effnet, clip, dino, lowlevel  # noqa: E402,F401  isort:skip

__all__ = [
    "Backbone",
    "BackboneConfig",
    "CombinedBackbone",
    "WeightsSource",
    "create_backbone",
    "get_config",
    "list_backbones",
    "parse_layers",
    "register_backbone",
]

RANDOM_SEED = 0  # pretrained=False builds the same random weights every time


def get_config(name: str) -> BackboneConfig:
    """The registered config of one (non-combined) backbone; DeepfakeError naming the known ones."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise DeepfakeError(f"Unknown backbone {name!r}: known backbones are {known} (join several with '+').")
    return _REGISTRY[name].config


def list_backbones() -> list[dict]:
    """One dict per registered backbone; `weights_present` looks only at local files, never the network."""
    rows = []
    for name in sorted(_REGISTRY):
        cfg = _REGISTRY[name].config
        local = None if cfg.weights is None else find_local(cfg.weights)
        present = cfg.weights is None or (local is not None and local.is_file())
        rows.append(
            {
                "name": name,
                "dim": cfg.dim,
                "input_size": cfg.input_size,
                "source": cfg.source,
                "weights_present": bool(present),
                "description": cfg.description,
                "env_var": cfg.weights.env_var if cfg.weights else None,
                "layers": "last" if cfg.num_blocks == 0 else f"last, early, all, or block indices 0-{cfg.num_blocks - 1}",
            }
        )
    return rows


def _split_weights(members: list[str], weights) -> dict[str, str | None]:
    """Per-member weights: a path (single backbone), a dict, or "name=PATH,name=PATH" for combinations."""
    if weights is None:
        return {m: None for m in members}
    if isinstance(weights, dict):
        unknown = set(weights) - set(members)
        if unknown:
            raise DeepfakeError(f"Weights given for {', '.join(sorted(unknown))}, which is not in {'+'.join(members)}.")
        return {m: weights.get(m) for m in members}
    text = str(weights)
    pairs = [p.split("=", 1) for p in text.split(",")] if "=" in text else []
    if pairs and all(len(p) == 2 and p[0].strip() in members for p in pairs):
        return _split_weights(members, {k.strip(): v.strip() for k, v in pairs})
    if len(members) == 1:
        return {members[0]: text}
    raise DeepfakeError(
        f"A single weights file is ambiguous for {'+'.join(members)}: use NAME=PATH pairs joined by commas, "
        f"e.g. {members[0]}=PATH."
    )


def _member_layers(members: list[str], layers: str) -> dict[str, str]:
    """One spec for all members, or "spec+spec" per member (what a combination's `layers` records)."""
    text = "last" if layers is None else str(layers)
    if "+" in text:
        parts = [p.strip() for p in text.split("+")]
        if len(parts) != len(members):
            raise DeepfakeError(
                f"Invalid layers {text!r} for {'+'.join(members)}: give one spec for all members "
                f"or one per member joined by '+' ({len(members)} of them); valid specs are listed by each backbone."
            )
        return dict(zip(members, parts))
    # weight-free members have no blocks: they always give their one feature vector
    return {m: text if (len(members) == 1 or _REGISTRY[m].config.num_blocks) else "last" for m in members}


def _create_one(name: str, weights, device, layers: str, pretrained: bool) -> Backbone:
    entry = _REGISTRY[name]
    cfg = entry.config
    if cfg.weights is None:
        if weights is not None:
            raise DeepfakeError(f"Backbone {name} has no weights; do not pass a weights file for it.")
        model = entry.builder(cfg, None, layers)
    elif not pretrained:
        if weights is not None:
            raise DeepfakeError(f"A weights file was given for {name} together with pretrained=False.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = entry.builder(cfg, None, layers)
        model.weights_id = "random"
    else:
        path = resolve_weights(cfg, weights)
        model = entry.builder(cfg, Path(path), layers)
        model.weights_id = weights_id(path)
    return model.freeze(device)


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


def create_backbone(
    name: str,
    weights: str | os.PathLike | dict | None = None,
    device: str | torch.device = "cpu",
    layers: str = "last",
    pretrained: bool = True,
) -> Backbone:
    """Build a frozen backbone (eval, no grad, on `device`); "a+b" concatenates members' features.

    `weights`: a local file (state dict, checkpoint, safetensors, OpenAI TorchScript for CLIP); for a
    combination a dict or "name=PATH,name=PATH". Without it: env var, cache, download, or
    `WeightsMissingError` quickly when offline. `pretrained=False`: seeded random weights (tests).
    `layers` applies to every member (weight-free members such as lowlevel always use "last"), or is
    one spec per member joined by "+", as `Backbone.layers` of a combination records it.
    """
    members = [m.strip() for m in str(name).split("+")]
    if not all(members):
        raise DeepfakeError(f"Invalid backbone name {name!r}: empty name around '+'.")
    if len(set(members)) != len(members):
        raise DeepfakeError(f"Backbone {name!r} lists a member twice.")
    for m in members:
        get_config(m)
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    per_member = _split_weights(members, weights)
    specs = _member_layers(members, layers)
    for m in members:  # a bad spec fails before any model is built
        parse_layers(specs[m], _REGISTRY[m].config)
    built = [_create_one(m, per_member[m], device, specs[m], pretrained) for m in members]
    return built[0] if len(built) == 1 else CombinedBackbone(built).freeze(device)
