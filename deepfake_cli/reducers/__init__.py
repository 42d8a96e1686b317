"""Reducer registry: `create_reducer(name, **params)` and `list_reducers()`.

Reducers are scikit-learn transformers with `fit`, `transform`, `inverse_transform`,
`reconstruction_error(X)` and `fit_info()` (extra facts for the reducer file's metadata). Each module of
this package registers its entry with `register_reducer(Entry(...))` when imported and the package
imports all of them, so adding a reducer is one new file here. An entry declares its hyper-parameters,
the skops types it adds to the allowlist and its capabilities (`random_state`, `device`).
"""

from __future__ import annotations

import importlib

from deepfake_cli.registry import Entry, Param, Registry, import_modules

REDUCERS = Registry("reducer")


def register_reducer(entry: Entry) -> Entry:
    return REDUCERS.register(entry)


def create_reducer(name: str, **params):
    """A fresh, unfitted reducer; `params` are its hyper-parameters (None values mean "the default")."""
    return REDUCERS.create(name, **{k: v for k, v in params.items() if v is not None})


def list_reducers() -> list[dict]:
    """Name, description, capabilities and hyper-parameters of each reducer, in registry order."""
    return [{"name": e.name, "description": e.description, "capabilities": sorted(e.capabilities),
             "params": [{"name": p.name, "default": p.default, "help": p.help} for p in e.params]}
            for e in REDUCERS.entries()]


def reducer_names() -> list[str]:
    return REDUCERS.names()


# the built-ins first, in the order they have always been listed (study grids follow it); then any other file
import_modules(__name__, __path__, first=("identity", "pca", "autoencoder"))

# reducer files of 0.1.0 name these classes `deepfake_cli.reducers.<Class>`; skops resolves them here (lazily:
# listing the reducers imports no scikit-learn)
_LEGACY = {"AutoencoderReducer": "_autoencoder", "IdentityReducer": "_identity", "PCAReducer": "_pca"}


def __getattr__(name: str):
    if name in _LEGACY:
        return getattr(importlib.import_module(f"{__name__}.{_LEGACY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["REDUCERS", "AutoencoderReducer", "Entry", "IdentityReducer", "PCAReducer", "Param", "create_reducer",
           "list_reducers", "reducer_names", "register_reducer"]
