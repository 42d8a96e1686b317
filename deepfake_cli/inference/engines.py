"""The engine registry: `--engine NAME` -> a Runner. Importing this module imports no engine (nor torch).

Adding an engine is one module with a Runner class (taking `workers=`) and one line here; the
reader, mapper, shard store and resume logic stay as they are.
"""

from __future__ import annotations

import importlib

from deepfake_cli.errors import DeepfakeError

# Engine name -> "module:factory" (imported on use, so an engine's heavy dependencies stay optional)
# and a line of help. A factory takes `workers=` and returns a Runner.
ENGINES: dict[str, tuple[str, str]] = {
    "local": ("deepfake_cli.inference.runner:LocalRunner", "this process, DataLoader reader processes"),
}


def create_runner(engine: str = "local", workers: int | None = None):
    """A Runner of `engine`; `workers` is its number of reader processes (None/-1: from the CPU count)."""
    if engine not in ENGINES:
        raise DeepfakeError(f"unknown engine '{engine}': choose from {', '.join(ENGINES)}.")
    module, _, attr = ENGINES[engine][0].partition(":")
    return getattr(importlib.import_module(module), attr)(workers=workers)
