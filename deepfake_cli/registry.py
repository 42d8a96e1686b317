"""A registry of named builders (timm style), shared by the classifier and reducer extension points.

An `Entry` is everything the rest of the code needs to know about one name: how to build it, its
hyper-parameters (default, help, how to read one from the command line), the skops types its fitted
estimator adds to the model-file allowlist, and its capabilities:

* ``scaled``       a StandardScaler goes in front of it (distance, margin or gradient based classifiers)
* ``device``       it takes a ``device`` parameter (``cpu``, ``cuda``, ``auto``)
* ``random_state`` it takes a seed as ``random_state``
* ``combined``     it needs features of joined backbones (``a+b``); train refuses others and passes the
                   members' (name, number of columns) pairs, from the file's metadata, as ``members``
* ``backbone``     it needs to know the backbone that made its features; train passes the file's
                   ``{"name", "layers", "weights_id", "members"}`` as ``backbone`` (e.g. to load CLIP's text tower)
* ``untrained``    it learns nothing from the images (zero-shot); train then also takes files without
                   labelled images of both classes (the validation part, if it has both, sets the threshold)
* ``opt_in``       (classifiers) left out of ``all``: it applies only to some features (fusion, zero-shot)
* ``labels``       (reducers) it uses labels; `reduce` passes them, leaving out the part train holds out

CLI options, study keys, saving and loading all read from here, so adding a classifier or a reducer
is one new module that registers its entry.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from deepfake_cli.errors import DeepfakeError

# parameters the caller supplies when the entry has the capability: from its own options (--seed, --device)
# or from the feature file's metadata (`features.capability_values`)
CAPABILITY_PARAMS = {"random_state": "random_state", "device": "device", "combined": "members",
                     "backbone": "backbone"}


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its name as the factory takes it, default, help, and a CLI string converter."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] = str


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    factory: Callable[..., Any]
    params: tuple[Param, ...] = ()
    trusted_types: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()
    # what it switches to on large training sets, and past which size ("" when its cost stays in hand)
    at_scale: str = ""

    def param(self, key: str) -> Param | None:
        return next((p for p in self.params if p.name == key), None)

    def accepted(self) -> list[str]:
        """Every keyword `Registry.create` passes on: the declared params, then the capability ones."""
        return [p.name for p in self.params] + [k for c, k in CAPABILITY_PARAMS.items() if c in self.capabilities]


class Registry:
    """Names -> entries, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind  # "classifier" | "reducer": used in messages
        self._entries: dict[str, Entry] = {}

    def register(self, entry: Entry) -> Entry:
        if entry.name in self._entries and self._entries[entry.name] is not entry:
            # two modules claiming one name is a programming error, not a user error
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        names = [p.name for p in entry.params]
        if len(set(names)) != len(names) or set(names) & set(CAPABILITY_PARAMS.values()):
            raise ValueError(f"{self.kind} {entry.name!r}: duplicate or reserved parameter names {names}")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise DeepfakeError(f"Unknown {self.kind} '{name}'; choose from {', '.join(self._entries)}.") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def create(self, name: str, **params):
        """A fresh estimator: the declared defaults updated by `params` (declared or capability keys)."""
        entry = self.get(name)
        accepted = entry.accepted()
        unknown = [k for k in params if k not in accepted]
        if unknown:
            raise DeepfakeError(f"{self.kind.capitalize()} '{name}' does not take {', '.join(unknown)}; "
                                f"it takes {_takes(accepted)}.")
        kwargs = {p.name: p.default for p in entry.params}
        kwargs.update(params)
        return entry.factory(**kwargs)

    def parse_params(self, name: str, pairs: list[str]) -> dict:
        """`["k=v", ...]` -> `{k: Param.type(v)}` for the declared hyper-parameters of `name`."""
        entry = self.get(name)
        out: dict = {}
        for pair in pairs:
            key, value = split_pair(pair)
            param = entry.param(key)
            if param is None:
                raise DeepfakeError(f"{self.kind.capitalize()} '{name}' has no parameter '{key}'; "
                                    f"it takes {_takes([p.name for p in entry.params])}.")
            out[key] = convert(param, value, f"{self.kind} '{name}'")
        return out


def capability_params(entry: Entry, supplied: dict) -> dict:
    """The keyword arguments a stage passes to `entry` for its capabilities: `supplied` maps a capability to
    its value (or to a function computing it, called only for entries that have the capability)."""
    out = {}
    for cap, key in CAPABILITY_PARAMS.items():
        if cap in entry.capabilities and cap in supplied:
            value = supplied[cap]
            out[key] = value() if callable(value) else value
    return out


def import_modules(package: str, path: Iterable[str], first: Iterable[str] = ()) -> None:
    """Import the modules of a registry package (each registers its entries): `first` in that order, then the
    rest by name. Modules whose name starts with `_` hold shared code and are not imported here."""
    names = list(first) + sorted(i.name for i in pkgutil.iter_modules(list(path))
                                 if not i.name.startswith("_") and i.name not in first)
    for name in names:
        importlib.import_module(f"{package}.{name}")


def lazy_class(module: str, name: str) -> Callable[..., Any]:
    """An entry factory that imports `module` (and so scikit-learn or torch) only when it builds one."""

    def build(**kwargs):
        return getattr(importlib.import_module(module), name)(**kwargs)

    build.__name__ = build.__qualname__ = name
    return build


def lazy_attributes(module: str, *names: str) -> Callable[[str], Any]:
    """A module-level `__getattr__` (PEP 562) serving `names` from `module`, imported on first use: a
    registry module keeps its estimator's public name without importing it when the package is listed."""

    def __getattr__(attr: str):
        if attr in names:
            return getattr(importlib.import_module(module), attr)
        raise AttributeError(f"module has no attribute {attr!r}")

    return __getattr__


def public_module(name: str) -> Callable[[type], type]:
    """Class decorator: the module a class is saved under (skops and pickle record `__module__`).

    An estimator implemented in a private module (`_pca.py`) keeps the name its model files have always
    used (`deepfake_cli.reducers.pca.PCAReducer`); that module serves it through `lazy_attributes`.
    """

    def mark(cls: type) -> type:
        cls.__module__ = name
        return cls

    return mark


def split_pair(pair: str) -> tuple[str, str]:
    """`"key=value"` -> `("key", "value")`; DeepfakeError for anything else."""
    key, sep, value = str(pair).partition("=")
    if not sep or not key.strip():
        raise DeepfakeError(f"--param takes KEY=VALUE, got '{pair}'.")
    return key.strip(), value.strip()


def convert(param: Param, value: str, owner: str):
    try:
        return param.type(value)
    except (TypeError, ValueError) as exc:
        raise DeepfakeError(f"Bad value {param.name}={value!r} for {owner}: {exc}.") from None


def _takes(names: list[str]) -> str:
    return ", ".join(names) if names else "no parameters"


# --- converters for Param.type: CLI strings -> values ------------------------------------------------

def optional(convert_one: Callable[[str], Any]) -> Callable[[str], Any]:
    """`none`/`null`/empty -> None, anything else through `convert_one`."""

    def parse(text: str):
        return None if str(text).strip().lower() in ("", "none", "null") else convert_one(text)

    parse.__name__ = f"optional_{getattr(convert_one, '__name__', 'value')}"
    return parse


def tuple_of(convert_one: Callable[[str], Any], words: str, example: str) -> Callable[[Any], tuple]:
    """A converter of `"a,b,c"` (or a tuple or list) to a tuple of `convert_one` values."""

    def parse(text) -> tuple:
        items = text if isinstance(text, (tuple, list)) else [v for v in str(text).split(",") if v.strip()]
        try:
            return tuple(convert_one(v) for v in items)
        except ValueError:
            raise ValueError(f"expected comma-separated {words} such as {example}, not {text!r}") from None

    return parse


int_tuple = tuple_of(int, "integers", "512,128")             # "512,128" -> (512, 128)
int_tuple.__name__ = "int_tuple"
float_tuple = tuple_of(float, "numbers", "0,0.1,0.2")        # "0,0.1,0.2" -> (0.0, 0.1, 0.2)
float_tuple.__name__ = "float_tuple"


def boolean(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def float_or(*words: str) -> Callable[[str], Any]:
    """A float, or one of the given words (e.g. SVC's gamma: 'scale' | 'auto' | a number)."""

    def parse(text: str):
        if str(text).strip() in words:
            return str(text).strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number or one of {', '.join(words)}, not {text!r}") from None

    parse.__name__ = "float_or_" + "_".join(words)
    return parse
