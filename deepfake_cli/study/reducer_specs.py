"""Reducers of the study grid: "none", "pca:64", "pca:variance=0.9", "autoencoder:32,epochs=50".

Names and parameters come from the reducer registry (`deepfake_cli.reducers.REDUCERS`), so a reducer
registered there is usable in a study without touching this package. A bare number first is the
dimension (`pca:64` = `pca:dim=64`); the other parameters are `key=value`, separated by commas (an item
without `=` after the first continues the previous value, so `hidden=256,128` stays one value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.registry import CAPABILITY_PARAMS

NO_REDUCER = "none"  # the registry's pass-through reducer: the study trains on raw features, no file
DIM = "dim"
# Parameters the study sets itself, from [study]: a grid entry may not set them per reducer.
STUDY_SET_PARAMS = {"seed", *CAPABILITY_PARAMS.values()}
# [study] keys (each also a StudyConfig field) that give one reducer's parameter a default for the whole
# grid: key -> (reducer, param). Kept from before the registry, so older study files still run.
LEGACY_REDUCER_KEYS = {"autoencoder_epochs": ("autoencoder", "epochs")}


@dataclass(frozen=True)
class ReducerSpec:
    """One reducer of the grid: the registry name and the parameters the config gave, in entry order."""

    method: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def params_dict(self) -> dict:
        return dict(self.params)

    @property
    def fitted(self) -> bool:
        """Whether cells with this reducer need a fitted reducer file (every reducer but "none")."""
        return self.method != NO_REDUCER

    @property
    def label(self) -> str:
        """How results.csv names it: "pca", "pca:64" or "pca:variance=0.9"."""
        if not self.params:
            return self.method
        if [k for k, _ in self.params] == [DIM]:
            return f"{self.method}:{self.params[0][1]}"
        return f"{self.method}:" + ",".join(f"{k}={_value_text(v)}" for k, v in self.params)

    def key_ident(self) -> list:
        """What identifies it in cache keys; [method, dim] for dimension-only specs, as since 0.1."""
        if set(self.params_dict) <= {DIM}:
            return [self.method, self.params_dict.get(DIM)]
        return [self.method, self.params_dict]


def _value_text(v) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def _items(rest: str) -> list[str]:
    items: list[str] = []
    for part in (p.strip() for p in rest.split(",")) if rest.strip() else []:
        if "=" not in part and items and "=" in items[-1]:
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def parse_reducer(spec: str) -> ReducerSpec:
    """A grid entry as a `ReducerSpec`, validated against the registry entry; DeepfakeError if bad."""
    from deepfake_cli.reducers import REDUCERS

    method, _, rest = str(spec).strip().partition(":")
    method = method.strip().lower()
    # names and keys are case-insensitive; values keep their case (a prompts file's path)
    rest = ",".join(f"{k.strip().lower()}={v}" if eq else k for k, eq, v in (p.partition("=") for p in rest.split(",")))
    names = list(REDUCERS.names())
    if method not in names:
        raise DeepfakeError(f"unknown reducer '{spec}' in the study config: use {', '.join(names)} "
                            "(e.g. pca:32 or pca:dim=32).")
    accepted = [p.name for p in REDUCERS.get(method).params]
    items = _items(rest)
    if items and "=" not in items[0]:
        items[0] = _bare_dim(spec, method, items[0], accepted)
    given = [i.partition("=")[0].strip() for i in items]
    fixed = sorted(set(given) & STUDY_SET_PARAMS)
    if fixed:
        raise DeepfakeError(f"bad reducer '{spec}': {', '.join(fixed)} is set by [study], not per reducer.")
    if len(set(given)) != len(given):
        raise DeepfakeError(f"bad reducer '{spec}': a parameter is given twice.")
    try:
        parsed = REDUCERS.parse_params(method, items)
    except DeepfakeError as exc:
        raise DeepfakeError(f"bad reducer '{spec}' in the study config: {exc}") from None
    if isinstance(parsed.get(DIM), int) and parsed[DIM] < 1:
        raise DeepfakeError(f"bad reducer '{spec}': the dimension must be at least 1.")
    order = [a for a in accepted if a in given]
    return ReducerSpec(method, tuple((k, _hashable(parsed[k])) for k in order))


def _bare_dim(spec: str, method: str, value: str, accepted: list[str]) -> str:
    if DIM not in accepted:
        raise DeepfakeError(f"reducer '{method}' takes no dimension (got '{spec}').")
    try:
        d = int(value)
    except ValueError:
        raise DeepfakeError(f"bad reducer '{spec}': the dimension must be an integer, e.g. pca:32.") from None
    if d < 1:
        raise DeepfakeError(f"bad reducer '{spec}': the dimension must be at least 1.")
    return f"{DIM}={d}"


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v
