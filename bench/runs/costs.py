"""What a run cost, as measured while it ran (docs/costs.md).

Every process that works on a run appends one ``SessionCost`` to the run's sessions.jsonl when it
stops working on it, whether it finished, was stopped (Ctrl-C, a scheduler's signal) or failed: time
spent is spent, so a resumed run's cost is the sum of its sessions, redone epochs included. The
summary holds their sum (``RunCost``); costs.csv, one row per finished run, is rebuilt from the
summaries beside results.csv (``bench.runs.results``). Nothing here measures: ``bench.pipelines.metering`` does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

OUTCOMES = ("finished", "stopped", "failed", "killed")


@dataclass(frozen=True)
class SessionCost:
    """One process's work on a run, from opening it to finishing, stopping or failing."""

    started: str  # UTC, ISO 8601
    outcome: str  # one of OUTCOMES; "killed": never recorded itself, its time read from its mark (bench.pipelines.metering)
    device: str  # what it computed on, as people name it (``device_label``)
    host: str
    setup_seconds: float  # opening the run: building the network, or a pipeline's planning and preprocessing
    train_seconds: float  # training, its validation epochs and checkpoints included
    evaluate_seconds: float | None  # predicting and scoring every test case; None: not reached
    processes: int  # torchrun ranks, each with its own device: device-hours count every one
    steps: int | None = None  # optimisation steps taken (each rank's); None: the pipeline does not count them
    step_seconds_median: float | None = None  # median time of those steps (forward, loss, backward, update)
    peak_memory_train_mib: float | None = None
    peak_memory_evaluate_mib: float | None = None
    memory_kind: str = ""  # bench.memory.peak_memory's kind: "cuda_allocated", "process_peak_rss" or "process_max_rss"

    @property
    def device_hours(self) -> float:
        return (self.setup_seconds + self.train_seconds + (self.evaluate_seconds or 0.0)) * self.processes / 3600


def device_label(kind: str, name: str, threads: int, processes: int = 1) -> str:
    """How the report groups runs: numbers measured on different devices never share a column unsaid."""
    label = f"{name} (cuda)" if kind == "cuda" else f"{name} (cpu, {threads} threads)"
    return f"{processes} x {label}" if processes > 1 else label


def append_session(path: Path, session: SessionCost) -> None:
    """One line per session in ``path`` (a run's sessions.jsonl, ``bench.runs.files.SESSIONS_FILE``);
    appended whole in one write, so a crash leaves whole lines."""
    with open(path, "a") as fh:
        fh.write(json.dumps(asdict(session)) + "\n")


def read_sessions(path: Path) -> list[SessionCost]:
    """The sessions in ``path``; a line that is not a session (cut by a full disk) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    names = {f.name for f in fields(SessionCost)}
    sessions = []
    for text in path.read_text().splitlines():
        try:
            entry = json.loads(text)
            sessions.append(SessionCost(**{k: v for k, v in entry.items() if k in names}))
        except (ValueError, TypeError):
            continue
    return sessions


@dataclass(frozen=True)
class RunCost:
    """A run's sessions summed: summary.json's ``cost``."""

    sessions: int
    device: str  # the sessions' device; several, joined by " + ", when they ran on different ones (``mixed``)
    setup_seconds: float
    train_seconds: float  # summed over every session that trained it
    evaluate_seconds: float
    steps: int | None
    step_seconds_median: float | None  # the median of the sessions' medians, weighted by their steps
    peak_memory_train_mib: float | None  # the highest of any session
    peak_memory_evaluate_mib: float | None
    memory_kind: str
    device_hours: float  # wall time of every session x its processes

    @property
    def mixed(self) -> bool:
        return " + " in (self.device or "")

    @classmethod
    def of(cls, sessions: list[SessionCost]) -> RunCost:
        counted = [s for s in sessions if s.steps]
        return cls(
            sessions=len(sessions),
            device=" + ".join(dict.fromkeys(s.device for s in sessions)),
            setup_seconds=round(sum(s.setup_seconds for s in sessions), 1),
            train_seconds=round(sum(s.train_seconds for s in sessions), 1),
            evaluate_seconds=round(sum(s.evaluate_seconds or 0.0 for s in sessions), 1),
            steps=sum(s.steps for s in counted) if counted else None,
            step_seconds_median=weighted_median([(s.step_seconds_median, s.steps) for s in counted if s.step_seconds_median is not None]),
            peak_memory_train_mib=highest(s.peak_memory_train_mib for s in sessions),
            peak_memory_evaluate_mib=highest(s.peak_memory_evaluate_mib for s in sessions),
            memory_kind=" + ".join(dict.fromkeys(s.memory_kind for s in sessions)),
            device_hours=round(sum(s.device_hours for s in sessions), 6),
        )

    @classmethod
    def read(cls, cost: dict[str, Any] | None) -> RunCost | None:
        """A summary's ``cost``; None for a run scored before runs recorded theirs. Keys a newer
        version added are ignored; a field an older one lacked reads as None (shown as "-")."""
        if cost is None:
            return None
        return cls(**{f.name: cost.get(f.name) for f in fields(cls)})


def weighted_median(pairs: list[tuple[float, int]]) -> float | None:
    """The value at the middle of the weights (the lower one where the halves meet)."""
    if not pairs:
        return None
    ordered = sorted(pairs)
    half, seen = sum(w for _, w in ordered) / 2, 0
    for value, weight in ordered:
        seen += weight
        if seen >= half:
            return value
    return ordered[-1][0]


def highest(values) -> float | None:
    """The largest of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return max(known) if known else None


def shape_text(shape) -> str | None:
    """A counted input's shape as tables show it: 32x32x32."""
    return "x".join(map(str, shape)) if shape else None


COST_COLUMNS = ("method", "data", "repeat", *(f.name for f in fields(RunCost)), "params_total", "params_trainable", "gmacs", "gmacs_input")
