"""What a runs folder holds, run by run: done, failed (with the reason), incomplete or missing.

The expected grid is every method found in the folder at every data fraction found there, times
the draws the committed splits define for that fraction. Reports and status views read this so an
unfinished grid is shown as unfinished, never averaged over fewer draws without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.io import read_json, write_json
from bench.runs.claim import is_running
from bench.runs.files import FAILED_FILE, RECOVERED_FILE, TESTING_FILE, epochs_logged, is_finished
from bench.runs.protocol import folder_protocol

STATES = ("done", "running", "failed", "incomplete", "missing")


@dataclass(frozen=True)
class RunState:
    data: str
    method: str
    repeat: int
    state: str  # one of STATES; incomplete = started, not running now (interrupted or killed): a rerun resumes it
    run_dir: Path
    reason: str = ""
    epochs_done: int = 0
    recovered: str = ""  # unreadable checkpoints moved aside and where training resumed from (recovered.json)


def recovery_of(run_dir: Path) -> str:
    """'checkpoint.pt was unreadable (moved to ...); resumed from checkpoint.prev.pt at epoch 5', one
    clause per recovery, or ''."""
    try:
        records = read_json(run_dir / RECOVERED_FILE) if (run_dir / RECOVERED_FILE).exists() else []
        clauses = []
        for r in records:
            moved = ", ".join(f"{u['file']} was unreadable (moved to {u['moved_to']})" for u in r["unreadable"])
            start = f"resumed from {r['resumed_from']} at epoch {r['epoch']}" if r["resumed_from"] else "trained from scratch"
            clauses.append(f"{moved}; {start}")
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable {RECOVERED_FILE}"
    return "; then ".join(clauses)


def failure_reason(run_dir: Path) -> str | None:
    """Why the run failed, as its failed.json says; None when it has none."""
    path = run_dir / FAILED_FILE
    if not path.exists():
        return None
    try:
        failure = read_json(path)
        return str(failure.get("reason", "unknown error"))
    except (OSError, ValueError, AttributeError):
        return f"unreadable {FAILED_FILE}"


def record_failure(run_dir: Path, error: BaseException, traceback_text: str) -> dict:
    """failed.json beside the run's other files: what broke, so the grid can go on and the report can say why.

    The reason names the root of an exception chain: libraries re-raise what they catch (MONAI's
    transforms raise ``RuntimeError("applying transform ...") from e``), and the wrapper would hide a
    SLURM time limit or an out-of-memory error behind its own name.
    """
    epochs = epochs_logged(run_dir)
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    payload = {
        "reason": f"{type(root).__name__}: {root}".strip(),
        "error_type": type(root).__name__,
        "epochs_done": epochs,
        "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "traceback": traceback_text[-4000:],
    }
    write_json(run_dir / FAILED_FILE, payload)
    return payload


def clear_failure(run_dir: Path) -> None:
    (run_dir / FAILED_FILE).unlink(missing_ok=True)


def _state_of(run_dir: Path, data: str, method: str, repeat: int, ask_scheduler: bool) -> RunState:
    if not run_dir.exists():
        return RunState(data, method, repeat, "missing", run_dir)
    epochs, recovered = epochs_logged(run_dir), recovery_of(run_dir)
    if is_finished(run_dir):
        return RunState(data, method, repeat, "done", run_dir, epochs_done=epochs, recovered=recovered)
    if (reason := failure_reason(run_dir)) is not None:
        return RunState(data, method, repeat, "failed", run_dir, reason=reason, epochs_done=epochs, recovered=recovered)
    running, where = is_running(run_dir, ask_scheduler)
    state = "running" if running else "incomplete"
    return RunState(data, method, repeat, state, run_dir, reason=where, epochs_done=epochs, recovered=recovered)


def scan_grid(runs_dir: Path, ask_scheduler: bool = True) -> list[RunState]:
    """Every run of the expected grid, in (fraction as in the paper, method, repeat) order; whether
    a SLURM job is still on a run is asked of the queue only with ``ask_scheduler``."""
    runs_dir = Path(runs_dir)
    protocol = folder_protocol(runs_dir)
    expected = {fraction: len(draws) for fraction, draws in protocol.draws.items()}
    fractions = [f for f in protocol.fractions if (runs_dir / f).is_dir()]
    methods = sorted({m.name for f in fractions for m in (runs_dir / f).iterdir() if m.is_dir() and any(m.glob("repeat*"))})
    found: set[tuple[str, str, int]] = set()
    for fraction in fractions:
        for method in methods:
            for path in (runs_dir / fraction / method).glob("repeat*"):
                suffix = path.name.removeprefix("repeat")
                if suffix.isdigit():
                    found.add((fraction, method, int(suffix)))
    states = []
    for fraction in fractions:
        for method in methods:
            repeats = set(range(expected.get(fraction, 1))) | {r for f, m, r in found if f == fraction and m == method}
            for repeat in sorted(repeats):
                states.append(_state_of(runs_dir / fraction / method / f"repeat{repeat}", fraction, method, repeat, ask_scheduler))
    return states


def grid_counts(states: list[RunState]) -> dict[tuple[str, str], dict]:
    """(data, method) -> {state: n for each of STATES, "expected": n, "reasons": [...]}."""
    counts: dict[tuple[str, str], dict] = {}
    for s in states:
        entry = counts.setdefault((s.data, s.method), {**dict.fromkeys(STATES, 0), "expected": 0, "reasons": []})
        entry[s.state] += 1
        entry["expected"] += 1
        if s.state == "failed":
            entry["reasons"].append(f"repeat {s.repeat}: {s.reason}")
    return counts


def describe(entry: dict) -> str:
    """'2 of 5 draws; 1 failed, 2 missing' or '' when the grid cell is complete."""
    if entry["done"] == entry["expected"]:
        return ""
    parts = [f"{entry['done']} of {entry['expected']} draws"]
    gaps = [f"{entry[k]} {k}" for k in STATES[1:] if entry[k]]
    return parts[0] + (f"; {', '.join(gaps)}" if gaps else "")


def write_testing(run_dir: Path, case: int, of: int) -> None:
    """Say that the run is predicting test case ``case`` of ``of`` (read by another process's board)."""
    write_json(Path(run_dir) / TESTING_FILE, {"case": case, "of": of})


def testing_now(run_dir: Path) -> tuple[int, int] | None:
    """(case, of) while the run predicts its test cases; None before, after, or unreadable."""
    try:
        entry = read_json(Path(run_dir) / TESTING_FILE)
        return int(entry["case"]), int(entry["of"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def done_testing(run_dir: Path) -> None:
    (Path(run_dir) / TESTING_FILE).unlink(missing_ok=True)
