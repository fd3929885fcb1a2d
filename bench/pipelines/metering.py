"""Measuring what one session of a run costs while it runs (recorded by ``bench.runs.costs``).

The lifecycle times three phases: setup (opening the run), training and evaluation. Training and
evaluation each get their peak memory (``bench.memory.peak_memory``: on CUDA the allocator's peak,
reset at the phase's start; on a CPU the process's peak resident set, reset where Linux allows it,
data-loading worker processes not included). The optimisation steps and their times come from the
pipeline (``PipelineRun.step_seconds``, optional); GMACs are counted once, when config.json is
written, on the network the run built.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bench.device import device_name
from bench.memory import peak_memory
from bench.runs.costs import SessionCost, append_session, device_label
from bench.runs.files import SESSIONS_FILE


class SessionMeter:
    """Times and peak memory of one session's phases, recorded once as a ``SessionCost``."""

    def __init__(self, device: str, threads: int, processes: int):
        self.device, self.threads, self.processes = device, threads, processes
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.seconds: dict[str, float] = {}
        self.memory: dict[str, dict] = {}
        self.recorded = False

    @contextmanager
    def phase(self, name: str, *, memory: bool = True) -> Iterator[None]:
        """Time the block (and measure its peak memory), also when it raises or is interrupted."""
        started = time.monotonic()
        try:
            if memory:
                with peak_memory(self.device) as measured:
                    self.memory[name] = measured  # filled as the block ends, however it ends
                    yield
            else:
                yield
        finally:
            self.seconds[name] = time.monotonic() - started

    def record(self, run_dir: Path, outcome: str, step_seconds: Sequence[float] | None) -> SessionCost | None:
        """Append this session to the run's sessions.jsonl, once; None if it was recorded already."""
        if self.recorded:
            return None
        self.recorded = True
        steps = list(step_seconds) if step_seconds is not None else None
        kinds = [m.get("kind") for m in self.memory.values() if m.get("kind")]
        session = SessionCost(
            started=self.started,
            outcome=outcome,
            device=device_label(self.device, device_name(self.device), self.threads, self.processes),
            host=platform.node(),
            setup_seconds=round(self.seconds.get("setup", 0.0), 2),
            train_seconds=round(self.seconds.get("train", 0.0), 2),
            evaluate_seconds=round(self.seconds["evaluate"], 2) if "evaluate" in self.seconds else None,
            processes=self.processes,
            steps=len(steps) if steps is not None else None,
            step_seconds_median=round(statistics.median(steps), 4) if steps else None,
            peak_memory_train_mib=self.memory.get("train", {}).get("peak_mib"),
            peak_memory_evaluate_mib=self.memory.get("evaluate", {}).get("peak_mib"),
            memory_kind=kinds[0] if kinds else "",
        )
        append_session(Path(run_dir) / SESSIONS_FILE, session)
        return session


def counted_gmacs(network, shape: Sequence[int]) -> float | None:
    """GMACs of one forward of ``network`` on one single-channel patch of ``shape`` (fvcore, as
    ``bench flops`` counts); None where it cannot be traced (the run goes on without the figure)."""
    import torch

    from methods.macs import count_macs

    network = getattr(network, "_orig_mod", network)  # a torch.compile'd module (nnU-Net's on CUDA): the module it wraps
    try:
        parameter = next(network.parameters())
        x = torch.rand(1, 1, *shape, device=parameter.device, dtype=parameter.dtype)
        return float(f"{count_macs(network, x).gmacs:.6g}")  # six significant figures, small networks too
    except Exception:  # noqa: BLE001 - a figure the run can do without never costs the run
        return None
