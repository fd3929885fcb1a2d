"""One run on several processes (``torchrun --nproc_per_node N -m bench.cli run ...``).

Every rank trains on its own crops with DistributedDataParallel; rank 0 alone writes files and
evaluates, so a run's folder looks the same as a single-process run's. Only parameters that
require gradients are registered with DDP's reducer, so a frozen SAM backbone is never
all-reduced: only the adapters' and decoder's gradients cross the wire.
"""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init(device: str) -> None:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU); nothing without torchrun."""
    if world_size() <= 1 or active():
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if device == "cuda" else "gloo")


def from_first_rank(value):
    """The first rank's ``value`` on every rank: what only it decides (whether it holds a run)."""
    if not active():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        torch.distributed.barrier()
