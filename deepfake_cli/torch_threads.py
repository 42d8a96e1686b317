"""Thread settings for the small PyTorch workloads of the linear probe and the autoencoder."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def small_torch_threads(n_values: int, device: str):
    """Run tiny CPU workloads on one torch thread, restoring the setting afterwards.

    On a busy machine, torch's intra-op thread pool makes thousands of tiny steps (a linear layer on
    a few hundred images) 50-100x slower than one thread does.
    """
    import torch

    if str(device).startswith("cuda") or n_values > 2_000_000:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
