"""Where planned runs execute, behind one interface: :func:`execute` takes the prepared grid and the
runs to execute and returns their failure lines, here one after another (``local``), in up to N
processes on this machine (``jobs``), or as SLURM jobs (``slurm``). A job is handed the grid's
decision and its one planned run (``bench.plan.decided.Decided.handed_to_jobs``) and runs it with
``local.run_handed``, deciding nothing again but what its own machine gives it."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from bench.executors import jobs, local, slurm


def execute(grid, runs: list, console: Console) -> list[str]:
    """Execute ``runs`` (planned in ``grid``) the way the request asks; returns the failure lines."""
    if grid.request.executor == "slurm":
        return slurm.submit_and_wait(grid, runs, console, local.run_handed)
    if grid.request.jobs > 1:
        return jobs.run_in_jobs(grid, runs, console, local.run_handed)
    return local.execute_locally(dataclasses.replace(grid, runs=runs), console)
