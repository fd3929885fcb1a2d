"""One run on several processes (``torchrun --nproc_per_node N -m bench.cli run ...``).

Every rank trains on its own crops with DistributedDataParallel; rank 0 alone writes files and
evaluates, so a run's folder looks the same as a single-process run's. Only parameters that
require gradients are registered with DDP's reducer, so a frozen SAM backbone is never
all-reduced: only the adapters' and decoder's gradients cross the wire.
"""

from __future__ import annotations

import os

import torch
from torch import nn


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


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def wrap(model: nn.Module, device: str) -> nn.Module:
    """DDP over the trainable parameters; the model itself when not distributed."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device == "cuda" else None
    # Several library networks hold trainable parameters their segmentation forward never uses
    # (MONAI UNETR's ViT classification parts, for one); DDP must not wait for their gradients.
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
