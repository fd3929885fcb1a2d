"""Running a prepared grid here: one planned run after another in this process (a failing run is
recorded and the grid goes on); with ``run_handed``, what each job (--jobs, SLURM) does for its one run."""

from __future__ import annotations

import traceback
from contextlib import nullcontext
from pathlib import Path
from types import MappingProxyType

from rich.console import Console

from bench import distributed
from bench.console import plain
from bench.data.source import cache_root
from bench.errors import UserError
from bench.io import is_storage_error
from bench.pipelines.context import RunContext
from bench.pipelines.lifecycle import execute_run
from bench.plan.decided import Decided, PreparedGrid
from bench.plan.grid import prepare_handed_run
from bench.plan.runs import PlannedRun, RunJob
from bench.runs.claim import claimed
from bench.runs.files import is_finished
from bench.runs.state import record_failure


def context_for(run: PlannedRun, grid: PreparedGrid) -> RunContext:
    """The context of one planned run of ``grid``."""
    ids = (*run.train_ids, *run.test_ids)
    return RunContext(
        name=run.name,
        method=run.base_method,
        options=MappingProxyType(dict(run.options)),
        config=run.config,
        profile=grid.profile,
        profile_overrides=MappingProxyType(dict(grid.profile_overrides)),
        device=grid.device,
        threads=grid.threads,
        label_set=grid.dataset.labels,
        train_ids=tuple(run.train_ids),
        test_ids=tuple(run.test_ids),
        originals=MappingProxyType({c: grid.dataset.cases[c] for c in ids}),
        preprocessed=MappingProxyType({c: grid.cases[c] for c in ids} if run.pipeline.needs_preprocessed(grid.profile) else {}),
        weights=grid.weights if run.backbone else None,
        run_dir=run.run_dir,
        cache_dir=cache_root(),
    )


def run_one(run: PlannedRun, grid: PreparedGrid, console: Console):
    """One planned run through its pipeline (the method's own, or the harness's), opened with its context."""
    job = RunJob(grid.provenance, grid.profile.name, Path(grid.request.out), grid.request.save_predictions, grid.decided.tracking)
    return execute_run(run, lambda: run.pipeline.open(context_for(run, grid), console), job, console)


def execute_locally(grid: PreparedGrid, console: Console) -> list[str]:
    """Every planned run that no other process holds, one after another; returns the failures
    (recorded in their failed.json). A run held elsewhere is left to its holder, with one line."""
    failures = []
    for run in grid.runs:
        # Every rank follows the first's reading of the files, which another process may be changing.
        if distributed.from_first_rank(is_finished(run.run_dir)):  # said by execute_run, which also rebuilds a missing results.csv
            run_one(run, grid, console)
            continue
        # A torchrun rank other than the first holds nothing: the first rank's claim counts.
        with claimed(run.run_dir) if distributed.is_main() else nullcontext() as claim:
            held_by = distributed.from_first_rank(claim if isinstance(claim, str) else None)
            if held_by is not None:
                console.print(f"[yellow]{plain(run.run_dir)}: held by {plain(held_by)}; left to it[/yellow]", soft_wrap=True)
                continue
            if getattr(claim, "took_over", ""):
                console.print(f"[yellow]{plain(run.run_dir)}: took the run over from {plain(claim.took_over)}, which is gone[/yellow]")
            if not distributed.is_main():
                run_one(run, grid, console)
                continue
            try:
                run_one(run, grid, console)
            except Exception as exc:  # noqa: BLE001 - one broken run (OOM, NaN, a bug) must not cost the rest of the grid
                # Bad input and a full or read-only disk are not the run's fault: every later run would fail alike.
                if isinstance(exc, UserError) or is_storage_error(exc):
                    raise
                failure = record_failure(run.run_dir, exc, traceback.format_exc())
                if distributed.active():  # the other ranks wait in a collective for this one: end them all
                    raise
                failures.append(run.failure_line(failure["reason"]))
                reason = plain(failure["reason"])
                console.print(f"[red]failed[/red] {plain(run.run_dir)}: {reason} (recorded in failed.json; going on)", soft_wrap=True)
    return failures


def run_handed(decided: Decided, run: PlannedRun, console: Console) -> list[str]:
    """One run planned elsewhere, executed here under the decision it was handed (what a --jobs or
    SLURM job does); returns its failure, if any."""
    return execute_locally(prepare_handed_run(decided, run, console), console)
