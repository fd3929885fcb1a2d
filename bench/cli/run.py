"""``bench run``: dataset -> split -> cached preprocessing -> build -> train -> infer -> score ->
results -> report. ``bench.plan.grid`` prepares the grid, ``bench.executors.local`` runs it here,
``bench.executors.slurm`` as one SLURM job per planned run; every run rebuilds results.csv as it
finishes; then the terminal table and the report are written from the run folders."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench.cli.common import PluginOption, ProtocolOption, console, fractions_help, method_names, use_plugins, user_errors
from bench.console import QUIET_ENV, plain
from bench.errors import RunsFailed, UserError
from splits import DEFAULT_PROTOCOL


@user_errors
def run(
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated method names (bench list shows them), or 'all'; options per method in brackets: 'tpmamba[r=48],masam'."
        ),
    ] = "tpmamba,masam",
    data: Annotated[str, typer.Option(help=fractions_help("Fraction of the training cases"))] = "25pct",
    protocol: ProtocolOption = DEFAULT_PROTOCOL,
    repeats: Annotated[
        str | None, typer.Option(help="Which random draws of the fraction to run: 'all' or e.g. '0,1' (default: the profile's; smoke: 0).")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="BTCV folder (RawData or Decathlon layout); default $BENCH_DATA_ROOT, else the synthetic abdomen.")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="paper (the paper's settings), smoke (2-core CPU sized) or auto (smoke without CUDA).")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder for runs/<data>/<method>/repeat<k>/ and results.csv.")] = Path("runs"),
    epochs: Annotated[int | None, typer.Option(help="Override the profile's number of epochs.")] = None,
    roi: Annotated[int | None, typer.Option(help="Override the profile's cubic crop / sliding-window size (voxels).")] = None,
    checkpoint_minutes: Annotated[
        float | None, typer.Option(help="Checkpoint at least this often besides every validation epoch (default: the profile's).")
    ] = None,
    sam_checkpoint: Annotated[
        Path | None, typer.Option(help="SAM ViT-B weights for the SAM methods: Meta's sam_vit_b_01ec64.pth or a timm weight file.")
    ] = None,
    allow_random_backbone: Annotated[
        bool, typer.Option(help="Paper profile: run SAM methods on a random ViT if no weights can be had (stamped on every output).")
    ] = False,
    seed: Annotated[
        int | None, typer.Option(help="The profile's seed, from which every run's seed derives (default: the profile's).")
    ] = None,
    profile_set: Annotated[
        list[str] | None,
        typer.Option(
            "--profile-set", help="Change any profile setting KEY=VALUE (repeatable), e.g. --profile-set lr=1e-3; shown in every output."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Option KEY=VALUE for every method named (repeatable), e.g. --set slice_scale=2; one method's options go in brackets.",
        ),
    ] = None,
    eval_space: Annotated[
        str, typer.Option(help="original: score on each label file's own grid and spacing; preprocessed: on the resampled, cropped grid.")
    ] = "original",
    nsd_tolerance: Annotated[float, typer.Option("--nsd-tolerance", help="Normalized surface Dice tolerance, mm.")] = 1.0,
    save_predictions: Annotated[
        bool, typer.Option(help="Write each test case's label map as NIfTI on its label file's grid, in RUN/predictions/.")
    ] = False,
    executor: Annotated[str, typer.Option(help="local (one run after another here) or slurm (one job per run, via submitit).")] = "local",
    slurm_partition: Annotated[str | None, typer.Option(help="SLURM partition (default: the cluster's).")] = None,
    slurm_gpus: Annotated[int, typer.Option(help="GPUs per job; with --device auto, > 0 means the jobs train on CUDA.")] = 0,
    slurm_time: Annotated[int, typer.Option(help="Time limit per job, minutes.")] = 24 * 60,
    slurm_mem: Annotated[float | None, typer.Option(help="Memory per job, GB (default: the cluster's).")] = None,
    slurm_cpus: Annotated[int | None, typer.Option(help="CPUs per job (default: the cluster's).")] = None,
    slurm_requeues: Annotated[int, typer.Option(help="Requeues of a job that hits its time limit (it resumes from its checkpoint).")] = 3,
    threads: Annotated[
        int | None, typer.Option(help="PyTorch threads per run (default: the cores this process is given, shared among --jobs).")
    ] = None,
    jobs: Annotated[str, typer.Option(help="Runs at once on this machine: a number, or auto (one per GPU with CUDA, else 1).")] = "1",
    plugin: PluginOption = None,
    track: Annotated[
        list[str] | None,
        typer.Option(
            "--track",
            help="Follow every run in tensorboard or mlflow[=URI] (repeatable; default store: RUNS/mlflow.db). Needs the extra: "
            "pip install 'sam3d-bench[mlflow]' or '[tensorboard]'.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No progress bars or per-case lines (here and in the jobs it starts); the rest as usual.")
    ] = False,
) -> None:
    """Train and evaluate methods on fixed BTCV splits; rerunning resumes and skips finished runs."""
    from bench.plan.runs import RunRequest, parse_options

    if quiet:  # through the environment, so that --jobs and SLURM jobs are quiet too
        os.environ[QUIET_ENV] = "1"
    use_plugins(plugin)
    names = method_names(methods)
    request = RunRequest(
        methods=names,
        data=data,
        protocol=protocol,
        threads=threads,
        jobs=jobs,
        repeats=repeats,
        data_root=data_root,
        profile=profile,
        device=device,
        out=out,
        epochs=epochs,
        roi=roi,
        checkpoint_minutes=checkpoint_minutes,
        sam_checkpoint=sam_checkpoint,
        allow_random_backbone=allow_random_backbone,
        options=parse_options(set_ or []),
        profile_overrides={**parse_options(profile_set or [], "--profile-set"), **({"seed": seed} if seed is not None else {})},
        eval_space=eval_space,
        nsd_tolerance_mm=nsd_tolerance,
        save_predictions=save_predictions,
        executor=executor,
        track=tuple(track or ()),
    )
    if executor == "slurm":
        from bench.executors.slurm import SlurmOptions

        bad_mem, bad_cpus = slurm_mem is not None and slurm_mem <= 0, slurm_cpus is not None and slurm_cpus < 1
        if min(slurm_gpus, slurm_requeues) < 0 or slurm_time < 1 or bad_mem or bad_cpus:
            raise UserError("--slurm-gpus/--slurm-requeues must be >= 0, --slurm-time >= 1 (min), --slurm-mem > 0 (GB), --slurm-cpus >= 1")
        request.slurm = SlurmOptions(slurm_partition, slurm_gpus, slurm_time, slurm_mem, slurm_cpus, slurm_requeues)
    csv_path = run_benchmark(request, console)
    from bench.distributed import is_main

    if is_main():
        from bench.runs.files import COSTS_CSV
        from bench.runs.results import cost_totals

        console.print(f"results: {plain(csv_path)}")
        totals = cost_totals(csv_path.parent)
        spent = "; ".join(f"{hours:.3g} device-hours for {n} run{'s' * (n != 1)} on {device}" for device, (n, hours) in totals.items())
        if spent:
            console.print(f"costs: {plain(csv_path.parent / COSTS_CSV)} ({plain(spent)})", soft_wrap=True)


def run_benchmark(request, console: Console, announce: Callable[[str], None] | None = None, render_report: bool = True) -> Path:
    """The whole of ``bench run`` for a ``bench.plan.runs.RunRequest``. Returns the results.csv path.
    Imports the harness when called, so that ``bench --help`` does not load PyTorch."""
    from bench import distributed
    from bench.executors import execute
    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import prepare_grid
    from bench.reporting.terminal import print_dice_table
    from bench.runs.files import REPORT_DIR, RESULTS_CSV
    from bench.runs.results import describe_space
    from bench.runs.tracking import finish_grid, start_grid

    if distributed.world_size() > 1 and not distributed.is_main():  # one voice: rank 0 prints and writes
        console, announce = Console(quiet=True), lambda _: None
    if request.executor == "slurm":
        from bench.executors.slurm import SlurmOptions

        request.slurm = request.slurm or SlurmOptions()
    started = time.time()
    grid = prepare_grid(request, console, announce, harness=HARNESS)
    out = Path(request.out)
    if distributed.is_main():
        start_grid(grid.decided.tracking, out)  # MLflow's parent run, before any job looks for it
    failures = execute(grid, grid.runs, console)
    if distributed.is_main():
        from bench.executors.others import wait_for_others

        # Under torchrun the other ranks have gone: a run left behind cannot be trained by rank 0 alone.
        again = (lambda runs: execute(grid, runs, console)) if distributed.world_size() == 1 else None
        failures += wait_for_others(grid.runs, out, again, console)
    if not distributed.is_main():
        return out / RESULTS_CSV
    labels = [run.method for run in grid.runs]
    space = describe_space(request.eval_space, grid.profile.preprocess.spacing_mm)
    caption = f"{grid.provenance.stamp}; {grid.protocol.caption}; {space}"
    print_dice_table(console, out, list(dict.fromkeys(labels)), request.data, caption)
    if render_report:
        from bench.reporting.report import write_report_once

        write_report_once(out, started, announce or console.print)
    for line in finish_grid(grid.decided.tracking, out, out / REPORT_DIR if render_report else None):
        console.print(f"tracked: {plain(line)}", soft_wrap=True)
    if failures:
        counted = f"{len(failures)} of {len(grid.runs)} runs failed"
        raise RunsFailed(f"{counted} (reasons in their failed.json; rerun to retry): " + "; ".join(failures))
    return out / RESULTS_CSV
