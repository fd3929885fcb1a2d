"""The runs of a grid that other processes were training when this one came to them (another
``bench run`` on the same folder, a job of an earlier submission): waited for before the grid's
results and report are written, so that both show the whole grid. A run whose holder goes away
without finishing it is run here."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from bench.console import plain
from bench.errors import UserError
from bench.runs.claim import is_running
from bench.runs.files import FAILED_FILE, is_finished
from bench.runs.results import write_results_csv
from bench.runs.state import failure_reason

POLL_S = 5.0


def wait_for_others(
    runs: list, runs_dir: Path, execute: Callable[[list], object] | None, console: Console, poll_s: float = POLL_S
) -> list[str]:
    """Wait until every run another process holds is finished or failed there; ``execute(runs)``
    trains the ones whose holder is gone (None: they are reported, for a rerun). Returns the
    failure lines of the runs waited for."""
    held = {}
    for run in runs:
        if is_finished(run.run_dir) or (run.run_dir / FAILED_FILE).exists():
            continue  # a failure is this process's own (a holder clears an old one as it starts): counted already
        running, where = is_running(run.run_dir)
        if running:
            held[run.run_dir] = (run, where)
    if not held:
        return []
    listed = "; ".join(f"{plain(run.name)} ({plain(where)})" for run, where in held.values())
    runs_held = f"{len(held)} run{'s' if len(held) != 1 else ''}"
    console.print(f"waiting for {runs_held} other processes are training: {listed}", soft_wrap=True)
    failures, adopted = [], set()
    try:
        while held:
            time.sleep(poll_s)
            orphans = []
            for key, (run, _) in list(held.items()):
                if is_finished(run.run_dir):
                    del held[key]
                    console.print(f"{plain(run.name)}: finished {'here' if key in adopted else 'by the process that held it'}")
                elif is_running(run.run_dir)[0]:
                    continue
                elif (reason := failure_reason(run.run_dir)) is not None:
                    del held[key]
                    where = "" if key in adopted else " (in the process that held it)"
                    failures.append(run.failure_line(f"{reason}{where}"))
                elif execute is None:
                    del held[key]
                    gone = "its holder is gone without finishing it; rerun to train it"
                    failures.append(run.failure_line(gone))
                else:
                    orphans.append(run)
            if orphans:
                names = ", ".join(plain(run.name) for run in orphans)
                console.print(f"[yellow]{names}: the process that held it is gone without finishing it; training it here[/yellow]")
                adopted.update(run.run_dir for run in orphans)
                execute(orphans)  # what becomes of them is read from their files on the next look
        # The last holder writes its summary before it rebuilds results.csv: rebuilt here too, so what
        # follows reads every run.
        write_results_csv(runs_dir)
    except KeyboardInterrupt:
        raise UserError(
            "stopped waiting; the other processes go on (bench status shows them), and results.csv holds every run finished so far"
        ) from None
    return failures
