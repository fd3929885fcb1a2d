"""``bench run --executor slurm``: one SLURM job per (method, fraction, draw) through submitit.

Each job is handed its one planned run and runs it with the local executor on its node, so a job
writes exactly what a local run writes, into the same runs folder; the submitting process waits,
records jobs that died without saying why (time limit, node failure) and renders the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import submitit
from rich.console import Console
from submitit.helpers import Checkpointable

from bench.console import plain
from bench.errors import UserError
from bench.runs.claim import SUBMITTED_FILE
from bench.runs.files import FAILED_FILE, SLURM_DIR, is_finished


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus: int = 0
    time_min: int = 24 * 60
    mem_gb: float | None = None
    cpus: int | None = None
    requeues: int = 3  # times a job that hits its time limit is requeued (resuming) before it counts as failed


class RunInJob(Checkpointable):
    """What a job executes: ``run_here(decided, run)`` for its one planned run under its grid's
    decision (the local executor's ``run_handed``, handed in by ``bench.executors.execute`` so that
    the job executors do not import the local one).

    Checkpointable: at its time limit SLURM signals the job, submitit requeues the same call, and
    the run resumes from its last checkpoint (up to --slurm-requeues times).
    """

    def __init__(self, run_here):
        self.run_here = run_here

    def __call__(self, decided, run) -> str:
        import sys

        from bench.errors import RunsFailed

        # The decision carries --threads only where the user gave it: the job's threads and loader
        # workers come from its own allocation (bench.plan.grid.localize), never from the host that
        # submitted it (seen: 1-CPU jobs given the login node's 2 threads, epochs 2.5x-30x slower).
        failures = self.run_here(decided, run, Console(file=sys.stdout, width=160))
        if failures:  # recorded in the run's failed.json; the job fails so the submitter sees it
            raise RunsFailed("; ".join(failures))
        return "done"


# What SLURM and submitit write to a job's logs when it is stopped from outside.
_KILL_MARKS = ("timed-out", "DUE TO TIME LIMIT", "CANCELLED", "OUT_OF_MEMORY", "oom-kill", "NODE_FAIL", "PREEMPT")


def log_hint(job) -> str:
    """The last line of the job's logs that says why SLURM stopped it, or ''."""
    found = ""
    for path in (job.paths.stdout, job.paths.stderr):
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if any(mark in line for mark in _KILL_MARKS):
                found = line.strip()[-300:]
    return found


def wait_for(job, poll_s: float = 5.0, grace_s: float = 60.0):
    """job.result(), but a job that leaves the queue without a result is a failure, not a wait forever.

    submitit learns a job's end from sacct; on clusters without accounting, a job killed before it
    could write its result would otherwise look unfinished for ever. The queue is asked every
    ``poll_s`` seconds, sooner at first (from a fifth of it, growing by half each time) so that a
    short job is not waited on for a whole interval.
    """
    from bench.runs.claim import slurm_job_state

    gone_since = None
    wait_s = poll_s / 5
    while not job.done():
        if slurm_job_state(job.job_id) is None:
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > grace_s:
                raise RuntimeError(f"SLURM job {job.job_id} left the queue without a result (killed or node lost; see {job.paths.stderr})")
        else:
            gone_since = None
        time.sleep(wait_s)
        wait_s = min(wait_s * 1.5, poll_s)
    return job.result()


def submit_and_wait(grid, planned, console: Console, run_here) -> list[str]:
    """Submit every unfinished planned run as a job array, each job given the grid's decision, its
    planned run and ``run_here`` to run it with; wait for all, return failure lines."""
    import shutil

    from bench.io import write_json

    request, options = grid.request, grid.request.slurm or SlurmOptions()

    if shutil.which("sbatch") is None:
        raise UserError("--executor slurm: sbatch not found; run this on a SLURM login node")
    todo = unfinished(planned, console)
    if not todo:
        return []
    executor = submitit.AutoExecutor(
        folder=Path(request.out).resolve() / SLURM_DIR / "%j", cluster="slurm", slurm_max_num_timeout=options.requeues
    )
    # SLURM warns a job before its time limit so it can requeue itself; the warning must not come
    # before the job has started listening (a 1-minute limit with the usual 90 s would kill it at once).
    warning_s = min(90, options.time_min * 60 // 4)
    parameters = {
        "timeout_min": options.time_min,
        "name": "bench",
        "slurm_gpus_per_node": options.gpus or None,
        "slurm_signal_delay_s": warning_s,
    }
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.mem_gb:
        parameters["slurm_mem_gb"] = options.mem_gb
    if options.cpus:
        parameters["cpus_per_task"] = options.cpus
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    # Every job gets the same decision; its node adds its threads, workers and provenance.
    handed = grid.decided.handed_to_jobs(executor="local", out=Path(request.out).resolve())
    jobs = []
    with executor.batch():
        for run in todo:
            jobs.append((run, executor.submit(RunInJob(run_here), handed, run)))
    for run, job in jobs:
        write_json(run.run_dir / SUBMITTED_FILE, {"job_id": job.job_id, "logs": str(job.paths.stdout.parent)})
    console.print(f"submitted {len(jobs)} SLURM jobs ({jobs[0][1].job_id.split('_')[0]}); logs in {plain(Path(request.out) / SLURM_DIR)}")
    failures = []
    for run, job in jobs:
        try:
            try:
                wait_for(job)
            except KeyboardInterrupt:
                raise UserError(
                    f"stopped waiting; the jobs go on on the cluster (bench status {request.out} shows them, "
                    "and rerunning the command waits for new ones only)"
                ) from None
        except Exception as exc:  # noqa: BLE001 - a job's failure is that run's, the grid goes on
            failures.append(job_failure(run, job, exc, f"SLURM job {job.job_id}: {log_hint(job) or str(exc)[-300:]}"))
    return failures


def unfinished(planned, console: Console) -> list:
    """The planned runs a job is still to be started for: not finished, and no process on them."""
    from bench.runs.claim import is_running

    todo = []
    for run in planned:
        running, where = is_running(run.run_dir)
        if is_finished(run.run_dir):
            console.print(f"[dim]{plain(run.run_dir)}: finished earlier, skipped[/dim]")
        elif running:  # a job from an earlier submission is still on it: a second one would race it
            console.print(f"[yellow]{plain(run.run_dir)}: still running ({plain(where)}), not submitted again[/yellow]")
        else:
            todo.append(run)
    return todo


def job_failure(run, job, exc: Exception, died: str) -> str:
    """The failure line of a run whose job failed; ``died`` is recorded as its reason when the job
    ended without recording one (killed, time limit, node lost)."""
    from bench.runs.state import failure_reason, record_failure

    if not (run.run_dir / FAILED_FILE).exists():
        record_failure(run.run_dir, RuntimeError(died), str(exc))
    return run.failure_line(failure_reason(run.run_dir) or f"job {job.job_id} ({job.state})")
