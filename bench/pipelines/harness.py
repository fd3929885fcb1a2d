"""The harness's own pipeline for one planned run: build the method's network, train it
(resuming from its checkpoint), predict the test cases by sliding window, score them on their
label files' grids and write the run's config.json and summary.json. A method whose pipeline is
its own (nnU-Net v2) is handed on to that pipeline."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

from rich.console import Console

from bench import distributed
from bench.console import plain, progress_bar
from bench.evaluation.evaluate import reference_of, save_prediction
from bench.plan.runs import PlannedRun, PreparedGrid
from bench.runs.files import CHECKPOINT_FILE, CONFIG_FILE, SUMMARY_FILE, ConfigFile, RunSummary
from bench.runs.results import run_summary
from bench.runs.state import clear_failure


def execute_run(run: PlannedRun, grid: PreparedGrid, console: Console) -> RunSummary | None:
    """Train, evaluate and summarise one run; returns its summary (read back if it finished earlier),
    None on a rank other than the first."""
    import torch

    from bench.evaluation.evaluate import evaluate_cases
    from bench.pipelines.training import steps_per_epoch, train
    from methods import count_parameters, create_model, get_method

    if get_method(run.base_method).pipeline == "nnunetv2":  # nnU-Net trains and predicts itself
        from bench.pipelines.nnunetv2 import execute_nnunet_run

        return execute_nnunet_run(run, grid, console)
    profile, device, weights = grid.profile, grid.device, grid.weights
    summary_path = run.run_dir / SUMMARY_FILE
    if summary_path.exists():
        console.print(f"[dim]{plain(run.run_dir)}: finished earlier, skipped[/dim]")
        return RunSummary.read(summary_path)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    clear_failure(run.run_dir)  # a retry: the old reason no longer describes this run
    extra = {"backbone_state": weights.state} if weights is not None and get_method(run.base_method).backbone else {}
    # Seeded initialisation: the same command builds the same network, and a resumed run rebuilds
    # the frozen random backbone its checkpoint leaves out. The options were checked when planning,
    # so an error here is the builder's own and is recorded as this run's failure.
    torch.manual_seed(run.config.seed)
    model = create_model(run.base_method, size=profile.model_size, roi_size=(profile.roi,) * 3, **run.options, **extra)
    total, trainable = count_parameters(model)
    config_path = run.run_dir / CONFIG_FILE
    if distributed.is_main() and not config_path.exists():
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        provenance = replace(grid.provenance, method_title=get_method(run.base_method).title or None)
        ConfigFile(run.config, run.hash, total, trainable, provenance, created).write(config_path)
    train_cases = [grid.cases[c] for c in run.train_ids]
    test_cases = [grid.cases[c] for c in run.test_ids]
    per_epoch = steps_per_epoch(len(train_cases), profile)
    started = time.monotonic()
    with progress_bar(console) as progress:
        task = progress.add_task(plain(f"{run.method} {run.data} #{run.repeat}"), total=profile.epochs * per_epoch, status="")

        def on_step(epoch: int, step: int, loss: float, lr: float) -> None:
            progress.update(task, completed=epoch * per_epoch + step, status=f"epoch {epoch + 1}/{profile.epochs} loss {loss:.3f}")

        state = train(
            model,
            train_cases,
            test_cases,
            profile,
            device,
            run.run_dir,
            run.hash,
            run.config.seed,
            on_step=on_step,
            notify=lambda msg: console.print(f"[yellow]{plain(msg)}[/yellow]"),
        )
        progress.update(task, completed=profile.epochs * per_epoch)
    train_seconds = time.monotonic() - started
    if not distributed.is_main():  # rank 0 evaluates and writes the summary; wait for it
        distributed.barrier()
        return None
    started = time.monotonic()
    per_case = evaluate_cases(
        state.model,
        test_cases,
        profile.roi,
        profile.sw_overlap,
        profile.sw_batch_size,
        device,
        space=run.config.eval_space,
        references=lambda case_id: reference_of(grid.dataset, case_id),
        tolerance_mm=run.config.nsd_tolerance_mm,
        on_prediction=(lambda case_id, labels, ref: save_prediction(run.run_dir, case_id, labels, ref))
        if grid.request.save_predictions
        else None,
    )
    seconds = {"train_this_session": round(train_seconds, 1), "evaluate": round(time.monotonic() - started, 1)}
    spacing = profile.preprocess.spacing_mm
    summary = run_summary(
        run, grid.provenance, profile.name, per_case, spacing_mm=spacing, seconds=seconds, processes=distributed.world_size()
    )
    state.save(run.run_dir / CHECKPOINT_FILE, run.hash, finished=True)
    summary.write(summary_path)
    distributed.barrier()
    return summary
