"""Backbone registry: `create_backbone(name)` and `list_backbones()` (timm/open_clip style).

Each family module registers its builders with `@register_backbone(BackboneConfig(...))`, or a whole
hub with `register_family(BackboneFamily(...))` ("open_clip:ARCH/TAG", "timm:NAME"); every module of
this package is imported below, so a new family is one new file. Names may be joined with "+" to
concatenate several backbones' features in that order.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from ..errors import DeepfakeError
from ..registry import import_modules
from .base import (
    _FAMILIES,
    _REGISTRY,
    BackboneConfig,
    BackboneFamily,
    WeightsSource,
    lookup,
    parse_layers,
    register_backbone,
    register_family,
)
from .weights import find_local, resolve_weights, weights_id

# importing the family modules registers their backbones and families
import_modules(__name__, __path__)

__all__ = [
    "Backbone",
    "BackboneConfig",
    "BackboneFamily",
    "CombinedBackbone",
    "WeightsSource",
    "create_backbone",
    "get_config",
    "list_backbones",
    "parse_layers",
    "register_backbone",
    "register_family",
    "split_preprocess",
]

RANDOM_SEED = 0  # pretrained=False builds the same random weights every time

# The model side (torch) is imported on first use: the registry, `get_config` and `list_backbones()` load
# no torch, so `deepfake backbones` (and anything that only reads configs) answers at once.
_LAZY = {"Backbone": "_tower", "TowerBackbone": "_tower", "SplitTransform": "_tower", "make_transform": "_tower",
         "CombinedBackbone": "_combined", "SplitPreprocess": "_combined", "split_preprocess": "_combined"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")



def get_config(name: str) -> BackboneConfig:
    """The config of one (non-combined) backbone, registered or from a family ("timm:NAME"); its `name`
    is canonical (e.g. timm's default tag filled in). DeepfakeError naming the known ones."""
    return lookup(name).config


def _present(weights: WeightsSource | None) -> bool:
    local = None if weights is None else find_local(weights)
    return weights is None or (local is not None and local.is_file())


def _matches(name: str, pattern: str | None) -> bool:
    """Case-insensitive: a glob when the pattern has wildcards, else a substring."""
    if not pattern:
        return True
    name, pattern = name.lower(), pattern.lower()
    return fnmatch.fnmatchcase(name, pattern) if any(c in pattern for c in "*?[") else pattern in name


def list_backbones(all: bool = False, pattern: str | None = None, cached: bool = False) -> list[dict]:
    """One dict per registered backbone; with `all`, also every model the families (open_clip, timm) offer
    with pretrained weights. `pattern` filters names (substring, or a glob with * ? [ ]); `cached` keeps
    those whose weights are here. `weights_present` looks only at local files, never the network."""
    rows = []
    for name in sorted(_REGISTRY):
        cfg = _REGISTRY[name].config
        if not _matches(name, pattern):
            continue
        rows.append(
            {
                "name": name,
                "family": "registered",
                "dim": cfg.dim,
                "input_size": cfg.input_size,
                "source": cfg.source,
                "weights_present": _present(cfg.weights),
                "description": cfg.description,
                "env_var": cfg.weights.env_var if cfg.weights else None,
                "layers": "last" if cfg.num_blocks == 0 else f"last, early, all, or block indices 0-{cfg.num_blocks - 1}",
            }
        )
    if all:
        for prefix, family in _FAMILIES.items():
            for row in family.catalog():
                if not _matches(row.name, pattern):
                    continue
                rows.append(
                    {
                        "name": row.name,
                        "family": prefix.rstrip(":"),
                        "dim": row.dim,
                        "input_size": row.input_size,
                        "source": row.weights.url,
                        "weights_present": _present(row.weights),
                        "description": row.description,
                        "env_var": row.weights.env_var,
                        "layers": None,  # known once built: `create_backbone(name).config.num_blocks`
                    }
                )
    return [r for r in rows if r["weights_present"]] if cached else rows


def _canonical(name: str) -> str:
    try:
        return lookup(name).config.name
    except DeepfakeError:
        return name


def _split_weights(members: list[str], weights) -> dict[str, str | None]:
    """Per-member weights: a path (single backbone), a dict, or "name=PATH,name=PATH" for combinations
    (a name may be written as given or canonically, e.g. "timm:resnet18" for "timm:resnet18.a1_in1k")."""
    if weights is None:
        return {m: None for m in members}
    if isinstance(weights, dict):
        weights = {_canonical(str(k).strip()): v for k, v in weights.items()}
        unknown = set(weights) - set(members)
        if unknown:
            raise DeepfakeError(f"Weights given for {', '.join(sorted(unknown))}, which is not in {'+'.join(members)}.")
        return {m: weights.get(m) for m in members}
    text = str(weights)
    pairs = [p.split("=", 1) for p in text.split(",")] if "=" in text else []
    if pairs and all(len(p) == 2 and _canonical(p[0].strip()) in members for p in pairs):
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
    return {m: text if (len(members) == 1 or lookup(m).config.num_blocks) else "last" for m in members}


def _create_one(name: str, weights, device, layers: str, pretrained: bool) -> "Backbone":
    import torch

    entry = lookup(name)
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


def create_backbone(
    name: str,
    weights: str | os.PathLike | dict | None = None,
    device: "str | torch.device" = "cpu",
    layers: str = "last",
    pretrained: bool = True,
) -> "Backbone":
    """Build a frozen backbone (eval, no grad, on `device`); "a+b" concatenates members' features.

    `name`: a registered name, "open_clip:ARCH/TAG" or "timm:NAME[.TAG]" (the built backbone's `name`
    is canonical: timm's default tag filled in, open_clip's tag normalised).
    `weights`: a local file (state dict, checkpoint, safetensors, OpenAI TorchScript for CLIP); for a
    combination a dict or "name=PATH,name=PATH". Without it: env var, cache, download, or
    `WeightsMissingError` quickly when offline. `pretrained=False`: seeded random weights (tests).
    `layers` applies to every member (weight-free members such as lowlevel always use "last"), or is
    one spec per member joined by "+", as `Backbone.layers` of a combination records it.
    """
    members = [m.strip() for m in str(name).split("+")]
    if not all(members):
        raise DeepfakeError(f"Invalid backbone name {name!r}: empty name around '+'.")
    members = [get_config(m).name for m in members]  # canonical names: what feature files record
    if len(set(members)) != len(members):
        raise DeepfakeError(f"Backbone {name!r} lists a member twice.")
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    per_member = _split_weights(members, weights)
    specs = _member_layers(members, layers)
    for m in members:  # a bad spec fails before any model is built
        parse_layers(specs[m], get_config(m))
    built = [_create_one(m, per_member[m], device, specs[m], pretrained) for m in members]
    if len(built) == 1:
        return built[0]
    from ._combined import CombinedBackbone

    return CombinedBackbone(built).freeze(device)
