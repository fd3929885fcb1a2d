"""One run's lifecycle, the same for every pipeline: skip a finished run, clear an old failure,
record the configuration, train, score every test case's prediction with the one metric code,
write the summary and rebuild results.csv.

A pipeline is what turns one planned run into predictions: the harness's own training and
sliding-window inference (``bench.pipelines.harness``), nnU-Net v2's pipeline
(``bench.pipelines.nnunetv2``), or label maps made elsewhere (``bench.pipelines.external``). Opening
a run (building or planning the network; ``bench.pipelines.context``) hands back a ``PipelineRun``
that trains and then yields one ``CasePrediction`` per test case; everything else is done here, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone

import torch
from rich.console import Console

from bench import distributed
from bench.console import CaseProgress, plain
from bench.evaluation.scores import score_case
from bench.io import write_nifti_gz
from bench.pipelines.context import PipelineRun
from bench.pipelines.metering import SessionMeter, counted_gmacs
from bench.plan.runs import PlannedRun, RunJob
from bench.runs.costs import RunCost, read_sessions
from bench.runs.files import (
    CONFIG_FILE,
    RESULTS_CSV,
    SESSIONS_FILE,
    SUMMARY_FILE,
    CaseScores,
    ConfigFile,
    RunSummary,
    is_finished,
    prediction_path,
)
from bench.runs.results import run_summary, write_results_csv
from bench.runs.state import clear_failure, done_testing, write_testing
from bench.runs.tracking import RunTracking
from methods.registry import count_parameters


def execute_run(run: PlannedRun, open_run: Callable[[], PipelineRun], job: RunJob, console: Console) -> RunSummary | None:
    """Train, predict, score and summarise one run, opened by ``open_run`` (a pipeline's ``open``
    with the run's context); returns its summary (read back if it finished earlier), None on a
    torchrun rank other than the first."""
    summary_path = run.run_dir / SUMMARY_FILE
    if is_finished(run.run_dir):
        console.print(f"[dim]{plain(run.run_dir)}: finished earlier, skipped[/dim]")
        if distributed.is_main() and not (job.runs_dir / RESULTS_CSV).exists():
            write_results_csv(job.runs_dir)
        return RunSummary.read(summary_path)
    clear_failure(run.run_dir)  # a retry: the old reason no longer describes this run
    done_testing(run.run_dir)  # nor does an interrupted attempt's test case
    meter = SessionMeter(run.config.device, torch.get_num_threads(), distributed.world_size())
    with meter.phase("setup", memory=False):
        opened = open_run()  # bad input found here leaves no run folder behind
        run.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run.run_dir / CONFIG_FILE
        if distributed.is_main() and not config_path.exists():
            write_config(run, opened, job, config_path)
    # The first rank tracks the run (--track) and marks it as worked on, from here on: the process that holds it.
    tracking = RunTracking(job.track, job.runs_dir, run) if job.track and distributed.is_main() else None
    if distributed.is_main():
        meter.begin(run.run_dir)
    try:
        with meter.phase("train"), tracking.following() if tracking else nullcontext():
            opened.train()
        if not distributed.is_main():  # the first rank scores and writes the summary; wait for it
            distributed.barrier()
            return None
        with meter.phase("evaluate"):
            per_case = score_cases(run, opened, job, console)
        meter.record(run.run_dir, "finished", getattr(opened, "step_seconds", None))
        cost = RunCost.of(read_sessions(run.run_dir / SESSIONS_FILE))  # every session that worked on the run, this one last
        seconds = {"train_this_session": round(meter.seconds["train"], 1), "evaluate": round(meter.seconds["evaluate"], 1)}
        ranks = distributed.world_size()
        summary = run_summary(
            run, job.provenance, job.profile_name, per_case, spacing_mm=opened.spacing_mm, seconds=seconds, processes=ranks, cost=cost
        )
        opened.finish()
        summary.write(summary_path)
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)
        if distributed.is_main():  # what the session cost is spent, whether or not the run goes on
            meter.record(run.run_dir, "stopped" if stopped else "failed", getattr(opened, "step_seconds", None))
        if tracking:  # stopped (Ctrl-C, SLURM's signal) to be resumed, or failed
            tracking.failed("KILLED" if stopped else "FAILED")
        raise
    if tracking:
        tracking.finish(summary)
    # The one place results.csv is written: rebuilt from every summary (under a lock, so runs that
    # finish at once in other processes are all in it) whenever one is written.
    write_results_csv(job.runs_dir)
    distributed.barrier()
    return summary


def write_config(run: PlannedRun, opened: PipelineRun, job: RunJob, path) -> None:
    """config.json, once per run: the configuration, the network's size (parameters; GMACs at its
    counted input: the pipeline's ``counted_input``, else the profile's crop) and the provenance."""
    total, trainable = count_parameters(opened.network) if opened.network is not None else (0, 0)
    shape, gmacs = None, None
    if opened.network is not None:  # external predictions have no network, nor a crop
        shape = list(getattr(opened, "counted_input", None) or (run.config.profile["roi"],) * 3)
        gmacs = counted_gmacs(opened.network, shape, identity=json.dumps([run.method, run.config.hyperparameters], default=str))
    provenance = replace(
        job.provenance,
        pipeline=opened.facts,
        method_title=run.title or None,
        method_source=run.source or None,
        compute_reference=run.compute_reference,
    )
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ConfigFile(run.config, run.hash, total, trainable, provenance, created, gmacs, shape if gmacs is not None else None).write(path)


def score_cases(run: PlannedRun, opened: PipelineRun, job: RunJob, console: Console) -> list[CaseScores]:
    """Every test case's prediction scored with every metric (and saved, if asked), with its progress."""
    per_case = []
    with CaseProgress(console, run.name, len(run.test_ids), lambda k, n: write_testing(run.run_dir, k, n)) as progress:
        for case in opened.predictions():
            if job.save_predictions and case.reference is not None:
                # On the label file's grid (same shape and affine), written atomically.
                write_nifti_gz(prediction_path(run.run_dir, case.case_id), case.prediction, case.reference.affine)
            scores = score_case(case.prediction, case.truth, case.spacing_mm, run.config.nsd_tolerance_mm, run.config.label_set)
            per_case.append(CaseScores(case.case_id, {organ: scores[organ] for organ in run.scored} if run.scored else scores))
            progress.case_done(case.case_id)
    done_testing(run.run_dir)
    return per_case
