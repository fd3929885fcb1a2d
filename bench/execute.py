"""Running planned runs here: prepare a grid (device, profile, weights, data, plan, preprocessing),
then train, evaluate and write each run's files.

``prepare_grid`` is shared by every executor; ``execute_locally`` runs a prepared grid one run
after another in this process (a failing run is recorded and the grid goes on), and ``run_locally``
is the two together: what ``bench run`` does without SLURM and what each SLURM job does for its one
run.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from bench import distributed
from bench.config import FRACTIONS, Profile, cache_root, parse_repeats, resolve_profile
from bench.console import plain, progress_bar
from bench.data.btcv import Dataset
from bench.data.preprocess import PreprocessedCase, cache_dir_for, load_or_preprocess
from bench.datasource import resolve_dataset
from bench.device import resolve_device
from bench.errors import UserError
from bench.evaluate import check_scoring_options, reference_of, save_prediction
from bench.grid import clear_failure, marked_running, record_failure
from bench.io import check_writable, is_storage_error
from bench.plan import PlannedRun, RunRequest, plan_runs
from bench.provenance import code_revision, hardware, package_versions
from bench.results import run_summary, write_results_csv
from bench.runfiles import CHECKPOINT_FILE, CONFIG_FILE, SUMMARY_FILE, ConfigFile, Provenance, RunSummary
from bench.weights import BackboneWeights, resolve_backbone_weights


@dataclass
class PreparedGrid:
    """Everything the runs of one request share, decided and checked before the first run starts."""

    request: RunRequest
    profile: Profile
    device: str
    dataset: Dataset
    weights: BackboneWeights | None
    runs: list[PlannedRun]
    cases: dict[str, PreprocessedCase]
    provenance: Provenance


def stamp(dataset: Dataset, profile: Profile, weights: BackboneWeights | None = None) -> str:
    parts = ["SYNTHETIC data (built-in abdomen, not BTCV)" if dataset.synthetic else f"BTCV at {dataset.root}", f"profile {profile.name}"]
    if profile.name != "paper":
        parts.append(f"{profile.preprocess.spacing_mm:g} mm voxels, {profile.roi}^3 crops, small random-init networks")
    if weights is not None and weights.random:
        parts.append("SAM methods on a random backbone")
    return "; ".join(parts)


def _provenance(dataset: Dataset, profile: Profile, device: str, prep: dict, weights: BackboneWeights | None) -> Provenance:
    return Provenance(
        data_source=dataset.source,
        data_root=str(dataset.root),
        data_layout=dataset.layout,
        synthetic=dataset.synthetic,
        profile=profile.name,
        device=device,
        hardware=hardware(device),
        versions=package_versions(),
        code_revision=code_revision(),
        preprocess_cache=prep.get("cache_dir"),
        sam_weights=weights.description if weights else None,
        stamp=stamp(dataset, profile, weights),
    )


def prepare_cases(dataset: Dataset, case_ids, profile: Profile, console: Console) -> tuple[dict[str, PreprocessedCase], dict]:
    """Preprocess (or load from the cache) every case needed; returns cases and timing facts."""
    cache_dir = cache_dir_for(cache_root(), dataset, profile.preprocess)
    cases: dict[str, PreprocessedCase] = {}
    started = time.monotonic()
    cached = 0
    with progress_bar(console) as progress:
        task = progress.add_task("preprocessing (cached once)", total=len(case_ids), status="")
        for cid in sorted(case_ids):
            case, was_cached = load_or_preprocess(dataset.cases[cid], profile.preprocess, cache_dir)
            cases[cid] = case
            cached += was_cached
            progress.update(task, advance=1, status=f"{cached} from cache")
    return cases, {"seconds": round(time.monotonic() - started, 2), "from_cache": cached, "cache_dir": str(cache_dir)}


def uses_harness_preprocessing(infos, profile: Profile) -> bool:
    """Whether any run of the grid reads the harness's preprocessed volumes: every method trained by
    the harness does, and nnU-Net's pipeline does where it is handed them instead of the originals."""
    from bench.nnunet_run import hands_over_coarse_volumes

    return any(info.pipeline is None for info in infos) or hands_over_coarse_volumes(profile)


def prepare_grid(request: RunRequest, console: Console, announce: Callable[[str], None] | None = None) -> PreparedGrid:
    """Check the request, find the data, plan the runs and preprocess the cases they need."""
    from methods import get_method
    from splits import load_splits

    if request.data not in FRACTIONS:
        raise UserError(f"unknown data fraction {request.data!r}; choose one of {', '.join(FRACTIONS)}")
    if not request.methods:
        raise UserError("--methods is empty; name at least one method (bench list shows them)")
    infos = [get_method(name) for name in request.methods]
    if request.executor not in ("local", "slurm"):
        raise UserError(f"unknown executor {request.executor!r}; choose local or slurm")
    if request.executor == "slurm":
        # The jobs' nodes, not this login node, decide: GPUs asked for means CUDA there.
        gpus = getattr(request.slurm, "gpus", 0)
        device = request.device if request.device != "auto" else ("cuda" if gpus > 0 else "cpu")
        request.device = device
    else:
        device = resolve_device(request.device)
    if distributed.world_size() > 1:
        if request.executor == "slurm":
            raise UserError("--executor slurm submits jobs; run it once, not under torchrun (ask for GPUs with --slurm-gpus)")
        distributed.init(device)
    profile = resolve_profile(request.profile, has_cuda=device == "cuda")
    request = replace(request, repeats=request.repeats or profile.repeats)  # no --repeats: the profile's draws
    if request.epochs is not None and request.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {request.epochs}")
    if request.roi is not None and request.roi < 8:
        raise UserError(f"--roi must be at least 8 voxels, got {request.roi}")
    if request.checkpoint_minutes is not None and request.checkpoint_minutes <= 0:
        raise UserError(f"--checkpoint-minutes must be positive, got {request.checkpoint_minutes}")
    check_scoring_options(request.eval_space, request.nsd_tolerance_mm)
    profile = profile.with_overrides(epochs=request.epochs, roi=request.roi, checkpoint_minutes=request.checkpoint_minutes)
    weights = None
    backbones = {info.backbone for info in infos if info.backbone is not None}
    if len(backbones) > 1:  # one --sam-checkpoint cannot serve two kinds of backbone
        raise UserError(f"these methods need different backbones ({', '.join(sorted(b.name for b in backbones))}); run them separately")
    if backbones:
        weights = resolve_backbone_weights(backbones.pop(), request.sam_checkpoint, profile.model_size, request.allow_random_backbone)

    splits = load_splits()
    parse_repeats(request.repeats, len(splits.train[request.data]))
    check_writable(Path(request.out))
    if not distributed.is_main():
        distributed.barrier()  # rank 0 writes the synthetic data and preprocessing cache first
    dataset = resolve_dataset(request.data_root, splits.all_ids(), console)
    say = announce or console.print
    say(f"[bold]{plain(stamp(dataset, profile, weights))}[/bold]; device {device}")
    if weights is not None:
        say(f"SAM backbone: {plain(weights.description)}")
    if dataset.synthetic:
        say("[yellow]Data: the built-in SYNTHETIC abdomen, not BTCV: the numbers show that the pipeline works and models learn.[/yellow]")

    planned = plan_runs(request, profile, device, dataset, weights)
    needed = set(splits.test)
    for run in planned:
        needed.update(run.train_ids)
    missing = sorted(c for c in needed if c not in dataset.cases)
    if missing:
        raise UserError(
            f"case {missing[0]} is required by the splits but not found under {dataset.root} ({len(missing)} missing; run bench data check)"
        )
    if uses_harness_preprocessing(infos, profile):
        cases, prep = prepare_cases(dataset, needed, profile, console)
        console.print(f"preprocessing: {len(cases)} cases in {prep['seconds']:.1f} s ({prep['from_cache']} from cache)")
    else:
        cases, prep = {}, {"seconds": 0.0, "from_cache": 0}
        console.print("preprocessing: none by the harness (these methods' own pipelines preprocess the original files)")
    if distributed.is_main():
        distributed.barrier()
    return PreparedGrid(request, profile, device, dataset, weights, planned, cases, _provenance(dataset, profile, device, prep, weights))


def execute_run(run: PlannedRun, grid: PreparedGrid, console: Console) -> RunSummary | None:
    """Train, evaluate and summarise one run; returns its summary (read back if it finished earlier),
    None on a rank other than the first."""
    import torch

    from bench.evaluate import evaluate_cases
    from bench.train import steps_per_epoch, train
    from methods import count_parameters, create_model, get_method

    if get_method(run.base_method).pipeline == "nnunetv2":  # nnU-Net trains and predicts itself
        from bench.nnunet_run import execute_nnunet_run

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


def execute_locally(grid: PreparedGrid, console: Console) -> list[str]:
    """Every planned run, one after another; returns the failures (recorded in their failed.json)."""
    out = Path(grid.request.out)
    if not distributed.is_main():
        for run in grid.runs:
            execute_run(run, grid, console)
        return []
    failures = []
    try:
        for run in grid.runs:
            try:
                with marked_running(run.run_dir):
                    execute_run(run, grid, console)
            except Exception as exc:  # noqa: BLE001 - one broken run (OOM, NaN, a bug) must not cost the rest of the grid
                # Bad input and a full or read-only disk are not the run's fault: every later run would fail alike.
                if isinstance(exc, UserError) or is_storage_error(exc):
                    raise
                failure = record_failure(run.run_dir, exc, traceback.format_exc())
                if distributed.active():  # the other ranks wait in a collective for this one: end them all
                    raise
                failures.append(f"{run.method} {run.data} repeat {run.repeat}: {failure['reason']}")
                reason = plain(failure["reason"])
                console.print(f"[red]failed[/red] {plain(run.run_dir)}: {reason} (recorded in failed.json; going on)", soft_wrap=True)
            write_results_csv(out)
    finally:
        # Whatever finished is in results.csv even if a later run fails or is interrupted.
        write_results_csv(out)
    return failures


def run_locally(request: RunRequest, console: Console) -> list[str]:
    """Prepare and execute a request in this process (a SLURM job runs its one run this way)."""
    return execute_locally(prepare_grid(request, console), console)
