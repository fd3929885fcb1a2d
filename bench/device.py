"""The device a command runs on and the precision it computes in: one place decides both.

CUDA trains and infers under autocast in bfloat16 where the GPU has it, else float16 with a gradient
scaler (float16 gradients underflow without one); the CPU computes in float32.
"""

from __future__ import annotations

from contextlib import nullcontext

from bench.errors import UserError


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return name


def autocast_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_for(device: str):
    """Mixed precision on CUDA (bf16 where the GPU has it, else fp16), full precision on CPU."""
    if device != "cuda":
        return nullcontext()
    import torch

    return torch.autocast(device_type="cuda", dtype=autocast_dtype())


def grad_scaler_for(device: str):
    """A gradient scaler that is active exactly when :func:`autocast_for` computes in float16."""
    import torch

    return torch.amp.GradScaler("cuda", enabled=device == "cuda" and autocast_dtype() == torch.float16)
