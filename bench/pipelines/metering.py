"""Measuring what one session of a run costs while it runs (recorded by ``bench.runs.costs``).

The lifecycle times three phases: setup (opening the run), training and evaluation. While a
session works on a run it keeps a mark in the run folder (.session.json, touched every 30 s), so a
session killed before it could record itself is still counted by the next one. Training and
evaluation each get their peak memory (``bench.memory.peak_memory``: on CUDA the allocator's peak,
reset at the phase's start; on a CPU the process's peak resident set, reset where Linux allows it,
data-loading worker processes not included). The optimisation steps and their times come from the
pipeline (``PipelineRun.step_seconds``, optional); GMACs are counted once, when config.json is
written, on the network the run built.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bench.device import device_name
from bench.io import read_json, write_json
from bench.memory import peak_memory
from bench.runs.claim import HEARTBEAT_S
from bench.runs.costs import SessionCost, append_session, device_label
from bench.runs.files import SESSION_MARK, SESSIONS_FILE


class SessionMeter:
    """Times and peak memory of one session's phases, recorded once as a ``SessionCost``."""

    def __init__(self, device: str, threads: int, processes: int):
        self.device, self.threads, self.processes = device, threads, processes
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.seconds: dict[str, float] = {}
        self.memory: dict[str, dict] = {}
        self.recorded = False
        self.label = device_label(device, device_name(device), threads, processes)
        self._mark: Path | None = None
        self._stop = threading.Event()

    @contextmanager
    def phase(self, name: str, *, memory: bool = True) -> Iterator[None]:
        """Time the block (and measure its peak memory), also when it raises or is interrupted."""
        started = time.monotonic()
        try:
            if memory:
                # No garbage collection first: a run's phase is not worth a third of a second to
                # free the few cycles an earlier one left.
                with peak_memory(self.device, collect=False) as measured:
                    self.memory[name] = measured  # filled as the block ends, however it ends
                    yield
            else:
                yield
        finally:
            self.seconds[name] = time.monotonic() - started

    def begin(self, run_dir: Path) -> None:
        """Mark the run as worked on by this session (its .session.json, touched every
        ``HEARTBEAT_S``). A mark left by a session that never recorded itself, killed outright
        (SIGKILL, the kernel's OOM killer, a lost node), is recorded first: as "killed", its time up
        to its last touch counted as training, its steps and memory unknown."""
        mark = Path(run_dir) / SESSION_MARK
        if mark.exists():
            try:
                left = read_json(mark)
                seconds = max(0.0, mark.stat().st_mtime - left["started_s"])
                killed = SessionCost(
                    left["started"], "killed", left["device"], left["host"], 0.0, round(seconds, 2), None, left["processes"]
                )
                append_session(Path(run_dir) / SESSIONS_FILE, killed)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a mark cut short says nothing usable; the session it stood for goes unrecorded
        write_json(
            mark,
            {"started": self.started, "started_s": time.time(), "device": self.label, "host": platform.node(), "processes": self.processes},
        )
        self._mark, self._stop = mark, threading.Event()

        def touch() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                with contextlib.suppress(OSError):
                    os.utime(mark)

        threading.Thread(target=touch, name=f"session mark {run_dir}", daemon=True).start()

    def record(self, run_dir: Path, outcome: str, step_seconds: Sequence[float] | None) -> SessionCost | None:
        """Append this session to the run's sessions.jsonl, once, and remove its mark; None if it
        was recorded already."""
        if self.recorded:
            return None
        self.recorded = True
        steps = list(step_seconds) if step_seconds is not None else None
        kinds = [m.get("kind") for m in self.memory.values() if m.get("kind")]
        session = SessionCost(
            started=self.started,
            outcome=outcome,
            device=self.label,
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
        if self._mark is not None:
            self._stop.set()
            self._mark.unlink(missing_ok=True)
        return session


_COUNTED: dict[tuple, float | None] = {}  # the counts this process made, by network (a grid's draws share them)


def counted_gmacs(network, shape: Sequence[int], identity: str = "") -> float | None:
    """GMACs of one forward of ``network`` on one single-channel patch of ``shape`` (fvcore, as
    ``bench flops`` counts); None where it cannot be traced (the run goes on without the figure).
    A network this process counted before, the same module tree under the same ``identity`` (the
    method's label and options), is not traced again: each draw of a grid builds the same one."""
    import torch

    from methods.macs import count_macs

    network = getattr(network, "_orig_mod", network)  # a torch.compile'd module (nnU-Net's on CUDA): the module it wraps
    key = (identity, tuple(shape), repr(network))
    if key in _COUNTED:
        return _COUNTED[key]
    try:
        parameter = next(network.parameters())
        x = torch.rand(1, 1, *shape, device=parameter.device, dtype=parameter.dtype)
        counted = float(f"{count_macs(network, x).gmacs:.6g}")  # six significant figures, small networks too
    except Exception:  # noqa: BLE001 - a figure the run can do without never costs the run
        counted = None
    _COUNTED[key] = counted
    return counted
