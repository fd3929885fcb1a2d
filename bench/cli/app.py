"""The ``bench`` command line: run, report, status and data here; list, flops and speed in
``bench.cli.costs``; doctor in ``bench.cli.doctor``. User errors print one line and exit with code 2, never a traceback
(``bench.cli.common.user_errors``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bench.cli import costs, doctor
from bench.cli.common import console, err_console, method_names, user_errors
from bench.console import plain
from bench.errors import UserError

app = typer.Typer(
    help="Benchmark of SAM adapters and 3D networks on BTCV under one protocol (TP-Mamba, MICCAI 2024).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Validate a BTCV folder or write the built-in synthetic abdomen.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command()
@user_errors
def run(
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated method names (bench list shows them), or 'all'; options per method in brackets: 'tpmamba[r=48],masam'."
        ),
    ] = "tpmamba,masam",
    data: Annotated[str, typer.Option(help="Fraction of the 24 training cases: 100pct, 25pct or 12pct.")] = "25pct",
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
) -> None:
    """Train and evaluate methods on fixed BTCV splits; rerunning resumes and skips finished runs."""
    from bench.executors.runner import run_benchmark
    from bench.plan.runs import RunRequest, parse_options

    names = method_names(methods)
    request = RunRequest(
        methods=names,
        data=data,
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
        console.print(f"results: {plain(csv_path)}")


@app.command()
@user_errors
def report(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder written by bench run.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the report files; default RUNS_DIR/report.")] = None,
) -> None:
    """Table 1 in the paper's style (Markdown, LaTeX, CSV), the paper's figures and report.html, from run files only."""
    from bench.reporting.report import write_report
    from bench.runs.files import REPORT_DIR
    from reports import paper_table1

    if not runs_dir.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist")
    paths = write_report(runs_dir, out or runs_dir / REPORT_DIR, paper_table1())
    names = ", ".join(sorted(p.name for p in paths.values()))
    console.print(f"wrote {len(paths)} files to {plain(paths['report.html'].parent)}: {names}", soft_wrap=True)
    console.print(f"report: {plain(paths['report.html'])}")


@app.command()
@user_errors
def score(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of label maps, one NIfTI per test case named by its id (label0035.nii.gz).")],
    method: Annotated[str, typer.Option(help="Row label in the tables, e.g. tpmamba-official.")],
    data: Annotated[str, typer.Option(help="Fraction the predicting model was trained on: 100pct, 25pct or 12pct.")],
    repeat: Annotated[int, typer.Option(help="Draw of that fraction the model was trained on (0-based).")],
    data_root: Annotated[Path | None, typer.Option(help="BTCV folder with the test labels; default as bench run.")] = None,
    out: Annotated[Path, typer.Option(help="Runs folder to write <data>/<method>/repeat<k>/ into.")] = Path("runs"),
    nsd_tolerance: Annotated[float, typer.Option("--nsd-tolerance", help="Normalized surface Dice tolerance, mm.")] = 1.0,
) -> None:
    """Score anyone's predictions with bench's metrics in the original label space; bench report shows them beside trained runs."""
    from bench.pipelines.external import score_predictions

    folder = score_predictions(pred_dir, method, data, repeat, out, console, data_root=data_root, nsd_tolerance_mm=nsd_tolerance)
    console.print(f"scored run: {plain(folder)}")


@app.command()
@user_errors
def status(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder written by bench run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only: one object per run of the grid.")] = False,
) -> None:
    """The grid of a runs folder: done, running, failed (with the reason), incomplete (a rerun resumes it) and missing."""
    from bench.runs.state import STATES, grid_counts, scan_grid

    if not runs_dir.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist")
    states = scan_grid(runs_dir)
    if as_json:
        rows = [{**s.__dict__, "run_dir": str(s.run_dir)} for s in states]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not states:
        raise UserError(f"no runs under {runs_dir} (expected <data>/<method>/repeat<k>/ folders written by bench run)")
    table = Table(title=f"Runs in {plain(runs_dir)}", caption="expected: every method here x every fraction here x the splits' draws")
    for column in ("data", "method", *STATES, "of"):
        table.add_column(column, justify="left" if column in ("data", "method") else "right")
    styles = {"done": "green", "running": "cyan", "failed": "red", "incomplete": "yellow", "missing": "dim"}
    for (data, method), entry in grid_counts(states).items():
        cells = [f"[{styles[k]}]{entry[k]}[/{styles[k]}]" if entry[k] else "0" for k in STATES]
        table.add_row(plain(data), plain(method), *cells, str(entry["expected"]))
    console.print(table)
    for s in states:
        if s.state in ("failed", "running", "incomplete"):
            detail = s.reason or ("rerun the command to resume" if s.state == "incomplete" else "")
            console.print(f"{s.state:<10} {plain(s.run_dir)} ({s.epochs_done} epochs): {plain(detail)}", highlight=False, soft_wrap=True)
    total = {k: sum(s.state == k for s in states) for k in STATES}
    console.print(", ".join(f"{n} {k}" for k, n in total.items()) + f" of {len(states)} runs")


@data_app.command("check")
@user_errors
def data_check(
    data_root: Annotated[Path | None, typer.Option(help="BTCV folder; default $BENCH_DATA_ROOT, else the synthetic abdomen.")] = None,
) -> None:
    """Validate every case: files present and readable, shapes and affines agree, labels 0..13, ids match the splits."""
    from bench.data.btcv import check_dataset
    from bench.data.source import resolve_dataset
    from splits import load_splits

    ids = load_splits().all_ids()
    dataset = resolve_dataset(data_root, ids, err_console)
    problems = check_dataset(dataset, ids)
    for line in problems:
        console.print(plain(line), highlight=False, soft_wrap=True)
    if problems:
        err_console.print(f"[red]{len(problems)} problem(s)[/red] in {plain(dataset.root)} ({dataset.layout} layout)")
        raise typer.Exit(code=2)
    console.print(f"{len(ids)} cases OK in {plain(dataset.root)} ({dataset.layout} layout{', synthetic' if dataset.synthetic else ''})")


@data_app.command("synth")
@user_errors
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write RawData/Training/{img,label}/ into.")],
    spacing_scale: Annotated[float, typer.Option(help="Multiply voxel sizes (1.0 = BTCV-like; larger = smaller files, for tests).")] = 1.0,
) -> None:
    """Write the synthetic abdomen (30 cases with BTCV's ids and layout, fixed seed: identical every time)."""
    from bench.data.btcv import BTCV_LABELLED_IDS
    from bench.data.source import ensure_synthetic

    if not 0.25 <= spacing_scale <= 16:
        raise UserError(f"--spacing-scale must be between 0.25 and 16, got {spacing_scale}")
    ensure_synthetic(out, BTCV_LABELLED_IDS, console, spacing_scale)
    console.print(f"wrote {len(BTCV_LABELLED_IDS)} synthetic cases to {plain(out / 'RawData' / 'Training')} (not BTCV: stamped synthetic)")


# After run, report and status, so --help lists them first.
app.command("list")(costs.list_)
app.command()(costs.flops)
app.command()(costs.speed)
app.command()(doctor.doctor)


def main() -> None:
    import warnings

    # timm's hrnet module declares a torch.jit.interface at import, which torch >= 2.10 marks as
    # deprecated: a line on every command about code the harness never runs.
    warnings.filterwarnings("ignore", message="`torch.jit.interface` is deprecated", category=FutureWarning)
    app()


if __name__ == "__main__":
    main()
