"""``bench run``: dataset -> split -> cached preprocessing -> build -> train -> infer -> score -> results -> report.

This module only chooses the executor and finishes the grid: ``bench.plan.grid`` prepares the
grid, ``bench.executors.local`` runs it here, ``bench.executors.slurm`` as one SLURM job per
planned run; every run rebuilds results.csv as it finishes; then the terminal table and the report
are written from the run folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from bench import distributed
from bench.console import plain
from bench.errors import RunsFailed
from bench.evaluation.evaluate import describe_space
from bench.executors.local import execute_locally, run_planned
from bench.plan.grid import prepare_grid
from bench.plan.runs import RunRequest
from bench.reporting.terminal import print_dice_table
from bench.runs.files import REPORT_DIR, RESULTS_CSV


def run_benchmark(request: RunRequest, console: Console, announce: Callable[[str], None] | None = None, render_report: bool = True) -> Path:
    """The whole of ``bench run``. Returns the results.csv path."""
    if distributed.world_size() > 1 and not distributed.is_main():  # one voice: rank 0 prints and writes
        console, announce = Console(quiet=True), lambda _: None
    if request.executor == "slurm":
        from bench.executors.slurm import SlurmOptions

        request.slurm = request.slurm or SlurmOptions()
    grid = prepare_grid(request, console, announce)
    out = Path(request.out)
    if request.executor == "slurm":
        from bench.executors.slurm import submit_and_wait

        failures = submit_and_wait(request, grid.runs, request.slurm, console, run_planned)
    else:
        failures = execute_locally(grid, console)
    if not distributed.is_main():
        return out / RESULTS_CSV
    labels = [run.method for run in grid.runs]
    caption = f"{grid.provenance.stamp}; {describe_space(request.eval_space, grid.profile.preprocess.spacing_mm)}"
    print_dice_table(console, out, list(dict.fromkeys(labels)), request.data, caption)
    if render_report:
        from bench.reporting.report import write_report
        from reports import paper_table1

        paths = write_report(out, out / REPORT_DIR, paper_table1())
        (announce or console.print)(f"report: {plain(paths['report.html'])} (tables: {plain(paths['table1.md'].parent)})")
    if failures:
        counted = f"{len(failures)} of {len(grid.runs)} runs failed"
        raise RunsFailed(f"{counted} (reasons in their failed.json; rerun to retry): " + "; ".join(failures))
    return out / RESULTS_CSV
