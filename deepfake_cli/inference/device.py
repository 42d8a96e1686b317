"""Where inference runs: the torch device and the number of reader processes."""

from __future__ import annotations

import os

import torch

from deepfake_cli.errors import DeepfakeError


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` | `cpu` | `cuda[:N]` -> a torch device; asking for CUDA without one is an error, not a fallback."""
    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeepfakeError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto.")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeepfakeError(f"unknown --device '{device}': use auto, cpu or cuda.")
    return torch.device(device)


def resolve_workers(workers: int | None) -> int:
    """Reader processes: `workers` when given (>= 0), else chosen from the CPU count."""
    if workers is not None and workers >= 0:
        return workers
    # Decoding overlaps the forward pass best in a separate process, but on a 2-core machine a
    # worker only steals the model's threads.
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus // 2)
