"""Memory a block of work takes: the CUDA allocator's peak, or on a CPU the process's peak resident
set (reset where Linux allows it), for ``bench speed``, ``bench doctor`` and every run's recorded cost."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager


def resident_mib() -> float:
    """The process's resident set now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's record of this process's peak resident set (Linux >= 4.0), so that the
    next reading is the peak of what runs from now on, not of everything since start."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def return_freed_memory(collect: bool = True) -> None:
    """Hand memory freed by earlier work back to the OS (glibc's malloc_trim), so that what the next
    block allocates raises the resident set again instead of reusing pages the process still holds;
    first collecting cyclic garbage unless ``collect`` is false (a third of a second in a process
    that has imported PyTorch and built networks)."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the resident set then undercounts reused memory
        pass


def peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def peak_memory(device: str, collect: bool = True) -> Iterator[dict]:
    """The peak memory of what runs inside the block, written into the yielded dict on exit:
    ``peak_mib`` (CUDA: the allocator's peak; CPU: the process's peak resident set during the
    block), ``base_mib`` (the same measure on entry, so ``peak_mib - base_mib`` is what the block
    added) and ``kind``, which says which of them it is."""
    import torch

    record: dict = {}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base, kind = torch.cuda.memory_allocated() / 2**20, "cuda_allocated"
    else:
        return_freed_memory(collect)
        base = resident_mib()
        kind = "process_peak_rss" if reset_peak_rss() else "process_max_rss"  # the latter: since start
    try:
        yield record
    finally:  # a block stopped by an error or Ctrl-C still says what it took
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()
        record.update(peak_mib=round(peak, 1), base_mib=round(base, 1), kind=kind)
