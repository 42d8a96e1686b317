"""Reading a zoo entry's head file: its sha256 checked, its weight and bias tensors found and their shapes
checked against the backbone, all failures one DeepfakeError line. Torch files load with weights_only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.zoo.catalog import ZooEntry


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find(obj, dotted: str):
    """obj["a"]["b.c"]...: the longest key that matches first, since state-dict keys contain dots."""
    if isinstance(obj, dict) and dotted in obj:
        return obj[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if isinstance(obj, dict) and head in obj:
            return _find(obj[head], ".".join(parts[i:]))
    raise KeyError(dotted)


def read_head(entry: ZooEntry, path: str | Path | None = None, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (1, d) weight and (1,) bias of `entry`'s head, from `path` (default: the shipped file), as float32.

    Refused in one line: a missing file, a sha256 other than the entry's (another or a damaged checkpoint),
    a file that is not a torch checkpoint of tensors, or shapes that do not fit a Linear(dim, 1)."""
    import torch

    path = Path(path) if path is not None else entry.head_path
    if not path.is_file():
        raise DeepfakeError(f"No head file at {path} for zoo model {entry.name}.")
    digest = file_sha256(path)
    if digest != entry.head_sha256:
        raise DeepfakeError(f"Head file {path} has sha256 {digest[:16]}..., not the {entry.name} head's "
                            f"{entry.head_sha256[:16]}... (from {entry.head_source}); refusing another or a damaged file.")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        weight, bias = _find(obj, entry.head_weight), _find(obj, entry.head_bias)
    except KeyError as exc:
        raise DeepfakeError(f"Head file {path} has no tensor {exc.args[0]!r} for zoo model {entry.name}.") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same to the user
        raise DeepfakeError(f"Cannot read head file {path} for zoo model {entry.name}: {type(exc).__name__}.") from None
    if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor):
        raise DeepfakeError(f"Head file {path} does not hold weight and bias tensors for zoo model {entry.name}.")
    w = weight.detach().float().cpu().numpy()
    b = bias.detach().float().cpu().numpy()
    want = f"(1, {dim})" if dim is not None else "(1, d)"
    if w.ndim != 2 or w.shape[0] != 1 or b.shape != (1,) or (dim is not None and w.shape[1] != dim):
        raise DeepfakeError(f"Head file {path} holds weight {tuple(w.shape)} and bias {tuple(b.shape)}; zoo model "
                            f"{entry.name} needs weight {want} and bias (1,) for its backbone {entry.backbone}.")
    return w, b
