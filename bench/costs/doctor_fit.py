"""``bench doctor``, part two: whether the work fits this machine. The data folder passes ``bench
data check``; the cache's disk has room for the preprocessing; one training step per method runs on
the device, and its peak memory leaves headroom."""

from __future__ import annotations

import _thread
import gc
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.costs.doctor import Check, Status

# Share of the device's memory above which a training step's peak leaves too little headroom: the
# allocator's cache, fragmentation and the CUDA context come on top of what PyTorch reports.
MEMORY_HEADROOM = 0.9


def data_checks(data_root: Path | None, settings, case_ids: Sequence[str]) -> list[Check]:
    """The data folder passes ``bench data check``, and the cache has room for its preprocessing."""
    from bench.data.abdomen import case_grid
    from bench.data.btcv import check_dataset, locate_dataset
    from bench.data.preprocess import cache_bytes_upper_bound, cache_dir_for
    from bench.data.source import cache_root, given_data_root, synthetic_root
    from bench.data.synthetic import COMPLETE_MARKER
    from bench.data.volumes import read_grid
    from bench.errors import DataError

    root = given_data_root(data_root)
    raw_bytes, dataset = 0, None
    if root is None:
        written = (synthetic_root() / COMPLETE_MARKER).exists()
        grids = [case_grid(cid) for cid in case_ids]
        if written:
            dataset = locate_dataset(synthetic_root(), synthetic=True)
        else:  # written on first use: int16 image and uint8 label, gzip makes them smaller
            raw_bytes = sum(3 * n[0] * n[1] * n[2] for n, _ in grids)
        when = "" if written else ", written on first use"
        data = Check("data", "ok", f"no --data-root: the built-in synthetic abdomen (not BTCV){when}")
    else:
        try:
            dataset = locate_dataset(root)
        except DataError as exc:
            return [Check("data", "fail", str(exc), "point --data-root at a BTCV folder (bench data check --help lists the layouts)")]
        problems = check_dataset(dataset, case_ids).problems
        if problems:
            return [
                Check(
                    "data",
                    "fail",
                    f"{len(problems)} problem(s) in {root}, the first: {problems[0]}",
                    f"bench data check --data-root {root} lists them all",
                )
            ]
        grids = [read_grid(dataset.cases[cid].image) for cid in case_ids]
        data = Check("data", "ok", f"{len(case_ids)} cases OK in {root} ({dataset.layout} layout)")
    cached = set()
    if dataset is not None:
        entry = cache_dir_for(cache_root(), dataset, settings)
        cached = {cid for cid in case_ids if (entry / f"{cid}.npz").exists()}
    need = raw_bytes + cache_bytes_upper_bound([g for cid, g in zip(case_ids, grids, strict=True) if cid not in cached], settings)
    return [data, disk_check(cache_root(), need, settings.spacing_mm, len(case_ids) - len(cached))]


def disk_check(cache: Path, need_bytes: int, spacing_mm: float, cases: int) -> Check:
    existing = next(p for p in (cache, *cache.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    detail = f"cache {cache}: {_size(free)} free; {cases} case(s) to preprocess at {spacing_mm:g} mm need at most {_size(need_bytes)}"
    data = {"free_bytes": free, "need_bytes": need_bytes}
    if free < need_bytes:
        return Check("disk", "fail", detail, "free space there, or set BENCH_CACHE_DIR to a larger disk", data)
    return Check("disk", "ok", detail, data=data)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def memory_capacity_mib(device: str) -> float:
    """What a training step may use: the GPU's memory, or the memory Linux reports available."""
    import torch

    if device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory / 2**20
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


class MemoryLimitReached(Exception):
    pass


@contextmanager
def _rss_limit(limit_mib: float | None, poll_s: float = 0.05) -> Iterator[None]:
    """Stop the block with MemoryLimitReached once the process's resident set passes ``limit_mib``.

    On the CPU a step that needs more than the machine has is not an exception but the kernel's
    OOM killer, which would end the doctor and its report with it. A watcher thread interrupts the
    main thread instead (it stops at the next Python-level operation of the step).
    """
    if limit_mib is None:
        yield
        return
    from bench.memory import resident_mib

    reached, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            if resident_mib() > limit_mib:
                reached.set()
                _thread.interrupt_main()
                return

    # interrupt_main() runs whatever SIGINT handler is installed and does nothing while SIGINT is
    # ignored, as it is in a background job or under nohup; Python's default handler raises.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if in_main else None
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if reached.is_set():
            raise MemoryLimitReached from None
        raise
    finally:
        done.set()
        watcher.join()
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if reached.is_set():  # the step ended before the interrupt reached it; it still passed the limit
        raise MemoryLimitReached


def memory_verdict(used_mib: float, capacity_mib: float) -> Status:
    return "ok" if used_mib <= MEMORY_HEADROOM * capacity_mib else "warn"


def training_step_checks(method_names: Sequence[str], profile, device: str, on_start: Callable[[str], None] | None = None) -> list[Check]:
    """One training step per method at the profile's crop and batch on ``device``: its time, the
    memory it took, and whether that fits the device."""
    import torch

    from bench.costs.speed import measure_training_step
    from bench.memory import peak_memory, resident_mib, return_freed_memory
    from methods import get_method
    from methods.registry import check_input_size

    roi, crops = profile.roi, profile.crops_per_case
    what = f"{crops} crop(s) of {roi}^3, {profile.name} profile, {device}"
    checks = []
    for name in method_names:
        if on_start is not None:
            on_start(name)
        try:
            check_input_size(get_method(name), (roi,) * 3, profile.model_size)
        except ValueError as exc:
            checks.append(Check(f"step {name}", "fail", str(exc)))
            continue
        return_freed_memory()  # what earlier steps freed counts as available
        capacity = memory_capacity_mib(device)
        try:
            with peak_memory(device) as memory, _rss_limit(resident_mib() + MEMORY_HEADROOM * capacity if device == "cpu" else None):
                model, row = measure_training_step(name, profile.model_size, roi, crops, device, steps=1, warmup=1)
                del model  # the next method's peak must not include this one's weights
        except (torch.OutOfMemoryError, MemoryLimitReached):
            action = "use a GPU with more memory or a smaller --roi"
            limit = f"{capacity:,.0f} MiB" if device == "cuda" else f"{MEMORY_HEADROOM:.0%} of the {capacity:,.0f} MiB available"
            checks.append(Check(f"step {name}", "fail", f"one training step ({what}) needs more than {limit}", action))
            continue
        except Exception as exc:  # noqa: BLE001  (any failure here would have ended a run)
            message = str(exc).splitlines()[0] if str(exc) else ""
            checks.append(Check(f"step {name}", "fail", f"a training step failed ({what}): {type(exc).__name__}: {message}"))
            continue
        finally:
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        # The allocator's peak is absolute; on the CPU the process already held memory before.
        used = memory["peak_mib"] - (memory["base_mib"] if device != "cuda" else 0.0)
        status = memory_verdict(used, capacity)
        detail = f"{row['train_step_s']:.2f} s per step ({what}); peak {used:,.0f} MiB of {capacity:,.0f} MiB"
        action = "" if status == "ok" else "too close to the device's memory: use a larger GPU, or a smaller --roi"
        data = {
            "train_step_s": row["train_step_s"],
            "peak_mib": round(used, 1),
            "capacity_mib": round(capacity, 1),
            "memory_kind": memory["kind"],
        }
        checks.append(Check(f"step {name}", status, detail, action, data))
    return checks
