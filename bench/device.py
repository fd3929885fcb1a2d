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


def cores_given() -> int:
    """The CPU cores this process may run on (its affinity: a SLURM job's or taskset's share), not the
    machine's."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share_of_cores(threads: int | None, ways: int) -> int:
    """``threads`` when asked, else the cores given divided ``ways`` (torchrun ranks or jobs)."""
    return threads or max(1, cores_given() // ways)


def set_threads(threads: int | None) -> int:
    """Size PyTorch's thread pool: ``threads`` when asked, else every core given; returns the count.
    PyTorch's default is the machine's cores, whatever share this process has."""
    import torch

    count = threads or cores_given()
    torch.set_num_threads(count)
    return count


def busy_warning(cores: int, threads: int) -> str | None:
    """One line when the 1-minute load average says other processes are using the cores this run
    will spin ``threads`` threads on (measured before it starts), with the threads that would fit."""
    import os

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    free = max(1, int(cores - load + 0.5))
    if load < 0.75 or threads <= free:
        return None
    return (
        f"the load average is {load:.1f} on {cores} cores: other processes are using them, and {threads} threads beside them "
        f"wait on each other (a training step about 3x slower on 2 cores beside one busy process); --threads {free} would fit"
    )
