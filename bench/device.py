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
    """The CPU cores this process may run on, not the machine's: its affinity (taskset, a cgroup),
    and inside a SLURM job no more than the job's allocation (``SLURM_CPUS_PER_TASK``, else
    ``SLURM_CPUS_ON_NODE``), which SLURM does not always enforce through the affinity."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if (value := os.environ.get(name, "")).isdigit() and int(value) > 0:
            return min(cores, int(value))
    return cores


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


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) clock ticks since boot, from /proc/stat."""
    times = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
                times[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return times


def cores_in_use(seconds: float = 0.15) -> float:
    """How many of the cores given are busy with other work right now, sampled over ``seconds``
    while this process sleeps. Not the load average: a run that has just ended keeps it up for
    minutes, and it covers the whole machine rather than this process's cores. Where /proc/stat
    cannot be read (not Linux), the 1-minute load average."""
    import os
    import time

    try:
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (OSError, ValueError):
        return os.getloadavg()[0]
    mine = os.sched_getaffinity(0) & before.keys() & after.keys()
    busy = sum(after[c][0] - before[c][0] for c in mine)
    total = sum(after[c][1] - before[c][1] for c in mine)
    return len(mine) * busy / total if total else 0.0


def busy_warning(cores: int, threads: int) -> str | None:
    """One line when other processes are using the cores this run will spin ``threads`` threads
    on (measured before it starts), with the threads that would fit beside them."""
    try:
        busy = cores_in_use()
    except (AttributeError, OSError):
        return None
    free = max(1, int(cores - busy + 0.5))
    if busy < 0.75 or threads <= free:
        return None
    return (
        f"other processes keep {busy:.1f} of the {cores} cores given busy, and {threads} threads beside them "
        f"wait on each other (a training step about 3x slower on 2 cores beside one busy process); --threads {free} would fit"
    )


def device_name(device: str) -> str:
    """What computed: the GPU's name on CUDA, else the CPU's model (Linux's /proc/cpuinfo; Python's
    ``platform.processor()`` is empty there)."""
    import platform

    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
