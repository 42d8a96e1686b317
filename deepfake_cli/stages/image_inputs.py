"""Checks of the inputs of the stages that score image files with a model (predict, explain, audit --model),
made before the model and its backbone load: one copy, so the stages cannot drift apart (stages never import
each other; this module serves them, as `splits` and `prediction_checks` do)."""

from __future__ import annotations

import os
from pathlib import Path

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.outputs import is_feature_file, with_listed


def model_and_image_inputs(a: dict) -> list:
    """What a run reads (for the output guards): the model file(s) and every listed image path."""
    from deepfake_cli.store.artifacts import model_paths

    model = a.get("model")
    try:
        models = model_paths(model) if model is not None and Path(model).is_dir() else [model]
    except DeepfakeError:
        models = [model]
    paths = a.get("paths")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or []) if isinstance(paths, (list, tuple)) else []
    return models + with_listed([p for p in paths if isinstance(p, (str, os.PathLike))])


def refuse_feature_files(model, paths, command: str = "predict") -> None:
    """A feature file given as the model or as an image: one line saying to use `eval`."""
    if model is not None and is_feature_file(model):
        raise DeepfakeError(f"{model} is a feature file (written by `deepfake extract`), not a model; score feature "
                            f"files with `deepfake eval MODEL --features {model}`.")
    for p in paths:
        if isinstance(p, (str, os.PathLike)) and is_feature_file(p):  # images in memory (the API) are no file
            raise DeepfakeError(f"{p} is a feature file, not an image; {command} reads image files: use "
                                f"`deepfake eval {model} --features {p}` to score feature files.")


def refuse_empty_folders(paths, what: str = "predict") -> None:
    """A folder input with no file that could hold an image (an image, a shard, a list, a parquet file)
    anywhere below it: one line now, before the model and its backbone load (seconds). The walk stops at the
    first such file, so a folder of images costs one directory read; anything subtler is `collect_files`'s."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for p in paths if isinstance(paths, (list, tuple)) else []:
        if isinstance(p, (str, os.PathLike)) and os.path.isdir(p) and not _holds_candidate(p):
            raise DeepfakeError(f"no image found in {p}: the folder holds no image file (nor .tar shard, list or "
                                f".parquet file); nothing to {what}.")


def _holds_candidate(folder) -> bool:
    from deepfake_cli.data.walk import IMAGE_EXTENSIONS

    kinds = set(IMAGE_EXTENSIONS) | {".tar", ".txt", ".csv", ".parquet", ".pq"}
    stack, seen = [os.fspath(folder)], set()
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
            if (st.st_ino, st.st_dev) in seen:  # a link loop: collect_files names it in its message
                return True
            seen.add((st.st_ino, st.st_dev))
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir():
                        stack.append(e.path)
                    elif os.path.splitext(e.name)[1].lower() in kinds or ".tar" in e.name.lower():
                        return True
        except OSError:  # unreadable, or a dangling link: collect_files reports it as it does
            return True
    return False
