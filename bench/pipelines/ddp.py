"""A network wrapped for several processes (``torchrun``): DistributedDataParallel over the trainable
parameters only, told which of them the training forward leaves without a gradient. Training's
business, so it lives with the trainer rather than with the rank bookkeeping (``bench.distributed``)."""

from __future__ import annotations

import torch
from torch import nn

from bench.distributed import active
from bench.pipelines.losses import deep_supervision_weights


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
