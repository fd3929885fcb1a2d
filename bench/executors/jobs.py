"""``bench run --jobs N``: up to N planned runs at once on this machine, each in its own process
through submitit's ``LocalExecutor`` (the job objects of the SLURM path), each given one GPU of
the visible ones or an equal share of the cores. A job runs its one planned run as a SLURM job
does, so results, resume, failure records, status and the report are those of one job at a time.
Job logs go to ``RUNS/.jobs/``."""

from __future__ import annotations

import time
from pathlib import Path

import submitit
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from bench.console import plain
from bench.executors.slurm import RunInJob, job_failure, unfinished
from bench.runs.files import JOBS_DIR, LOG_FILE, read_log
from bench.runs.state import testing_now

A_WEEK_MIN = 7 * 24 * 60  # submitit's local jobs time out after 2 minutes unless told otherwise


def job_slots(jobs: int, gpus: int) -> list[list[int]]:
    """The GPUs each of ``jobs`` slots sees: one each with ``gpus`` (CUDA), none on the CPU."""
    return [[slot % gpus] for slot in range(jobs)] if gpus else [[] for _ in range(jobs)]


def progress_line(run, job_id: str, slot: list[int], seconds: float) -> str:
    """One running job as the terminal shows it, read from what its run has logged so far:
    ``unetr 12pct #0  job 4711 (GPU 1)  epoch 5/24  loss 0.8123  1:02``."""
    epochs = (run.config.profile.get("epochs") if run.config else None) or "?"
    logged = read_log(run.run_dir / LOG_FILE)
    done = f"epoch {logged[-1].epoch}/{epochs}  loss {logged[-1].loss:.4f}" if logged else f"epoch 0/{epochs}"
    if testing := testing_now(run.run_dir):
        done += f"  testing case {testing[0]}/{testing[1]}"
    where = f" (GPU {slot[0]})" if slot else ""
    minutes, secs = divmod(int(seconds), 60)
    return f"{run.name}  job {job_id}{where}  {done}  {minutes}:{secs:02d}"


def run_in_jobs(grid, planned, console: Console, run_here) -> list[str]:
    """Every unfinished planned run in up to ``--jobs`` local jobs at once, each on one of the
    visible GPUs (CUDA) or with an equal share of the cores (the grid's threads); each job is
    handed the grid's decision and runs its run with ``run_here``. Returns failure lines."""
    import torch

    todo = unfinished(planned, console)
    if not todo:
        return []
    jobs, threads = grid.request.jobs, grid.threads
    gpus = torch.cuda.device_count() if grid.device == "cuda" else 0
    out = Path(grid.request.out).resolve()
    executor = submitit.LocalExecutor(folder=out / JOBS_DIR / "%j")
    here = grid.decided.handed_to_jobs(executor="local", out=out, threads=threads, jobs=1)
    free = job_slots(jobs, gpus)
    running: list[tuple[object, object, list[int], float]] = []
    failures = []
    each = "one GPU" if gpus else f"{threads} thread{'s' if threads != 1 else ''}"
    runs = f"{len(todo)} run{'s' if len(todo) != 1 else ''}"
    console.print(f"{runs} in up to {jobs} jobs at once ({each} each); logs in {plain(out / JOBS_DIR)}")

    def board() -> Group:
        now = time.monotonic()
        return Group(*(Text(progress_line(run, job.job_id, slot, now - t0), style="dim") for run, job, slot, t0 in running))

    # transient: on a terminal the lines are redrawn in place and vanish at the end; in a log file
    # (no terminal) nothing but the started/finished lines is written.
    with Live(board(), console=console, transient=True, refresh_per_second=1) as live:
        while todo or running:
            while todo and free:
                run, slot = todo.pop(0), free.pop(0)
                executor.update_parameters(timeout_min=A_WEEK_MIN, gpus_per_node=len(slot), visible_gpus=tuple(slot))
                job = executor.submit(RunInJob(run_here), here, run)
                gpu = f", GPU {slot[0]}" if slot else ""
                console.print(f"started {plain(run.name)} (job {job.job_id}{gpu})")
                running.append((run, job, slot, time.monotonic()))
            time.sleep(1.0)
            for entry in [e for e in running if e[1].done()]:
                run, job, slot, _ = entry
                running.remove(entry)
                free.append(slot)
                try:
                    job.result()
                    console.print(f"finished {plain(run.name)}")
                except Exception as exc:  # noqa: BLE001 - a job's failure is that run's, the grid goes on
                    failures.append(job_failure(run, job, exc, f"job {job.job_id} ended without a result: {str(exc)[-300:]}"))
            live.update(board())
    return failures
