"""The engine registry: `--engine NAME` -> a Runner. Importing this module imports no engine (nor torch).

Adding an engine is one module with a Runner class (taking `workers=` and its own keyword options)
and one line here; the reader, mapper, shard store and resume logic stay as they are. The options an
engine takes are its factory's keyword parameters: the CLI passes every engine option it has, unset
ones as None, and an option set for an engine that does not take it is refused in one line.
"""

from __future__ import annotations

import importlib
import inspect

from deepfake_cli.errors import DeepfakeError

# Engine name -> "module:factory" (imported on use, so an engine's heavy dependencies stay optional)
# and a line of help. A factory takes `workers=` and returns a Runner.
ENGINES: dict[str, tuple[str, str]] = {
    "local": ("deepfake_cli.inference.runner:LocalRunner", "this process, DataLoader reader processes"),
    "ray": ("deepfake_cli.inference.ray_runner:RayRunner",
            "a Ray cluster: reader tasks, the model in a pool of restartable actors; needs the ray extra"),
}


def _option_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _factory(engine: str):
    module, _, attr = ENGINES[engine][0].partition(":")
    return getattr(importlib.import_module(module), attr)


def create_runner(engine: str = "local", workers: int | None = None, **options):
    """A Runner of `engine`; `workers` is its number of reader processes (None/-1: from the CPU count).

    `options` are engine-specific (for ray: address, model_workers, gpus_per_worker, device); None
    means unset."""
    if engine not in ENGINES:
        raise DeepfakeError(f"unknown engine '{engine}': choose from {', '.join(ENGINES)}.")
    factory = _factory(engine)
    accepted = inspect.signature(factory).parameters
    given = {k: v for k, v in options.items() if v is not None}
    wrong = [k for k in given if k not in accepted or k == "workers"]
    # device is every engine's business; only an engine that places the model itself takes it here
    wrong = [k for k in wrong if k != "device"]
    if wrong:
        takers = [n for n in ENGINES if n != engine and wrong[0] in inspect.signature(_factory(n)).parameters]
        raise DeepfakeError(f"{', '.join(_option_flag(k) for k in wrong)} "
                            f"{'applies' if len(wrong) == 1 else 'apply'} to --engine {' or '.join(takers) or 'ray'} "
                            f"only, not to --engine {engine}.")
    return factory(workers=workers, **{k: v for k, v in given.items() if k in accepted})
