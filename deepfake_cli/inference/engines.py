"""The engine registry: `--engine NAME` -> a Runner. Importing this module imports no engine (nor torch).

An engine is one `Engine` entry: its name, its Runner factory as "module:attr" (imported on use, so an
engine's heavy dependencies stay optional), a line of help, and the options it takes, each declared once
here (name, type, default, help). The CLI (`extract`/`predict` `--engine` and one flag per option), the
API (`dfc.extract(..., ray_address=...)`) and the study config (`[study] ray_address = ...`) are all built
from these declarations (`deepfake_cli.options.EngineOptions`), so adding an engine is its Runner module
and one `register_engine(...)` call; the reader, mapper, shard store and resume logic stay as they are.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from deepfake_cli.errors import DeepfakeError


@dataclass(frozen=True)
class EngineOption:
    """One engine option: `name` is the API keyword, the study key and (dashed) the CLI flag; `kwarg` the
    factory's keyword when it differs (`ray_address` -> `address`). None as default means "unset": the
    engine's own default applies."""

    name: str
    type: type
    help: str
    default: Any = None
    kwarg: str = ""

    @property
    def factory_kwarg(self) -> str:
        return self.kwarg or self.name

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Engine:
    name: str
    factory: str                 # "module:attr", called as factory(workers=..., **options) -> Runner
    description: str
    options: tuple[EngineOption, ...] = ()
    takes_device: bool = False   # the engine places the model itself (the local runner gets it per job)

    def load(self):
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


_ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine) -> Engine:
    if engine.name in _ENGINES and _ENGINES[engine.name] is not engine:
        raise ValueError(f"engine {engine.name!r} is registered twice")  # a programming error
    for other in _ENGINES.values():  # one option name means one thing whichever engine declares it
        for o in engine.options:
            same = next((p for p in other.options if p.name == o.name), None)
            if same is not None and same.type is not o.type:
                raise ValueError(f"engine option {o.name!r} declared with two types")
    _ENGINES[engine.name] = engine
    return engine


def get_engine(name: str) -> Engine:
    try:
        return _ENGINES[name]
    except KeyError:
        raise DeepfakeError(f"unknown engine '{name}': choose from {', '.join(_ENGINES)}.") from None


def list_engines() -> list[Engine]:
    return list(_ENGINES.values())


def engine_options() -> list[EngineOption]:
    """Every option of every engine, each name once, in registration order."""
    seen: dict[str, EngineOption] = {}
    for engine in _ENGINES.values():
        for o in engine.options:
            seen.setdefault(o.name, o)
    return list(seen.values())


def engines_help() -> str:
    """`local (this process, ...); ray (a Ray cluster ...)`: the `--engine` help, from the registry."""
    return "; ".join(f"{e.name} ({e.description})" for e in _ENGINES.values())


def option_help(option: EngineOption) -> str:
    """An option's help prefixed with the engines that take it: `--engine ray: model actors (default 1).`"""
    takers = [e.name for e in _ENGINES.values() if any(o.name == option.name for o in e.options)]
    return f"--engine {' | '.join(takers)}: {option.help}"


def create_runner(engine: str = "local", workers: int | None = None, **options):
    """A Runner of `engine`; `workers` is its number of reader processes (None/-1: from the CPU count).

    `options` are engine options by their declared name (`ray_address`) or their factory keyword
    (`address`), plus `device`; None means unset. An option set for an engine that does not take it is
    refused in one line naming the engines that do."""
    entry = get_engine(engine)
    by_name = {}
    for o in entry.options:
        by_name[o.name] = by_name[o.factory_kwarg] = o
    given = {k: v for k, v in options.items() if v is not None}
    device = given.pop("device", None)  # every engine's business; only some place the model themselves
    wrong = [k for k in given if k not in by_name]
    if wrong:
        def flag(k):
            known = next((o for o in engine_options() if k in (o.name, o.factory_kwarg)), None)
            return known.flag if known else "--" + k.replace("_", "-")

        takers = [e.name for e in _ENGINES.values() if e.name != engine
                  and any(wrong[0] in (o.name, o.factory_kwarg) for o in e.options)]
        raise DeepfakeError(f"{', '.join(flag(k) for k in wrong)} "
                            f"{'applies' if len(wrong) == 1 else 'apply'} to --engine {' or '.join(takers) or 'ray'} "
                            f"only, not to --engine {engine}.")
    kwargs = {by_name[k].factory_kwarg: v for k, v in given.items()}
    if entry.takes_device and device is not None:
        kwargs["device"] = device
    factory = entry.load()
    accepted = inspect.signature(factory).parameters
    missing = [k for k in kwargs if k not in accepted]
    if missing:  # the entry declares an option its factory does not take: our bug, said plainly
        raise ValueError(f"engine {engine!r}: factory does not take {missing}")
    return factory(workers=workers, **kwargs)


# --- the engines ---------------------------------------------------------------------------------------

register_engine(Engine("local", "deepfake_cli.inference.runner:LocalRunner",
                       "this process, DataLoader reader processes"))
register_engine(Engine(
    "ray", "deepfake_cli.inference.ray_runner:RayRunner",
    "a Ray cluster: reader tasks, the model in a pool of restartable actors; needs the ray extra",
    options=(
        EngineOption("ray_address", str, "the cluster, HOST:PORT (default: RAY_ADDRESS, else a local cluster for this "
                     "run); ray:// (Ray Client) is not supported.", kwarg="address"),
        EngineOption("model_workers", int, "model actors (default 1)."),
        EngineOption("gpus_per_worker", float, "GPUs per model actor (default 0: CPU; fractions share a GPU)."),
    ),
    takes_device=True))

# `ENGINES`: the registered names -> entries (read-only use; register with `register_engine`)
ENGINES = _ENGINES
