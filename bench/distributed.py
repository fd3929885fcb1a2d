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

from bench.pipelines.losses import deep_supervision_weights


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


def unused_trainable_parameters(model: nn.Module, input_shape: tuple[int, ...]) -> list[str] | None:
    """Names of trainable parameters the training forward never reaches, found by one forward and
    backward on PyTorch's meta device (shapes only: no memory, no compute, the model untouched).

    None when the model cannot run on the meta device (then nothing can be ruled out).
    """
    from torch.func import functional_call

    was_training = model.training
    model.train()
    try:
        params = {n: torch.empty_like(p, device="meta").requires_grad_(p.requires_grad) for n, p in model.named_parameters()}
        buffers = {n: torch.empty_like(b, device="meta") for n, b in model.named_buffers()}
        out = functional_call(model, (params, buffers), (torch.empty(input_shape, device="meta"),))
        outputs = out if isinstance(out, list | tuple) else [out]
        # As the loss sees them: a deep-supervision output of weight 0 sends no gradient.
        weights = deep_supervision_weights(len(outputs))
        names = [n for n, p in params.items() if p.requires_grad]
        total = sum(o.float().sum() for o, w in zip(outputs, weights, strict=True) if w > 0)
        grads = torch.autograd.grad(total, [params[n] for n in names], allow_unused=True)
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    finally:
        model.train(was_training)
    return [n for n, g in zip(names, grads, strict=True) if g is None]


def wrap(model: nn.Module, device: str, input_shape: tuple[int, ...]) -> nn.Module:
    """DDP over the trainable parameters; the model itself when not distributed.

    DDP waits for a gradient of every registered parameter unless told that some may have none,
    which costs a pass over the graph each step; it is told so only for a network that has trainable
    parameters its forward does not use (MONAI UNETR's unused cross-attention norms, the deep
    supervision heads of a U-Net trained without deep supervision), or whose forward cannot be
    checked on the meta device.
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device == "cuda" else None
    unused = unused_trainable_parameters(model, input_shape)
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused is None or bool(unused))
