"""The ``bench`` command line. User errors print one line and exit with code 2, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bench.console import plain
from bench.errors import RunsFailed, UnknownMethodError, UserError

app = typer.Typer(
    help="Benchmark of SAM adapters and 3D networks on BTCV under one protocol (TP-Mamba, MICCAI 2024).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Validate a BTCV folder or write the built-in synthetic abdomen.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Logs and CI are not terminals; give the 15-column organ tables room there too.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def method_names(text: str) -> list[str]:
    """``a,b`` -> [a, b]; ``all`` -> every registered method; ``none`` -> []."""
    from methods import list_methods

    names = [m.strip() for m in text.split(",") if m.strip()]
    if names == ["all"]:
        return [info.name for info in list_methods()]
    return [] if names == ["none"] else names


def user_errors(fn: F) -> F:
    """Turn the errors a user can fix into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, UnknownMethodError) as exc:
            err_console.print(f"[red]error:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            from bench.io import is_storage_error, storage_message

            if not is_storage_error(exc):
                raise
            err_console.print(f"[red]error:[/red] {plain(storage_message(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except RunsFailed as exc:  # the grid went on; what finished is saved and reported
            err_console.print(f"[red]failed:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished epochs are checkpointed; rerun the same command to resume")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def run(
    methods: Annotated[str, typer.Option(help="Comma-separated method names (bench list shows them), or 'all'.")] = "tpmamba,masam",
    data: Annotated[str, typer.Option(help="Fraction of the 24 training cases: 100pct, 25pct or 12pct.")] = "25pct",
    repeats: Annotated[str, typer.Option(help="Which random draws of the fraction to run: 'all' or e.g. '0,1'.")] = "all",
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
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Method option KEY=VALUE (repeatable), e.g. --set r=48 --set planes=dw for TP-Mamba's ablations."),
    ] = None,
    executor: Annotated[str, typer.Option(help="local (one run after another here) or slurm (one job per run, via submitit).")] = "local",
    slurm_partition: Annotated[str | None, typer.Option(help="SLURM partition (default: the cluster's).")] = None,
    slurm_gpus: Annotated[int, typer.Option(help="GPUs per job; with --device auto, > 0 means the jobs train on CUDA.")] = 0,
    slurm_time: Annotated[int, typer.Option(help="Time limit per job, minutes.")] = 24 * 60,
    slurm_mem: Annotated[float | None, typer.Option(help="Memory per job, GB (default: the cluster's).")] = None,
    slurm_cpus: Annotated[int | None, typer.Option(help="CPUs per job (default: the cluster's).")] = None,
    slurm_requeues: Annotated[int, typer.Option(help="Requeues of a job that hits its time limit (it resumes from its checkpoint).")] = 3,
) -> None:
    """Train and evaluate methods on fixed BTCV splits; rerunning resumes and skips finished runs."""
    from bench.plan import RunRequest, parse_options
    from bench.runner import run_benchmark

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
        executor=executor,
    )
    if executor == "slurm":
        from bench.slurm import SlurmOptions

        bad_mem, bad_cpus = slurm_mem is not None and slurm_mem <= 0, slurm_cpus is not None and slurm_cpus < 1
        if min(slurm_gpus, slurm_requeues) < 0 or slurm_time < 1 or bad_mem or bad_cpus:
            raise UserError("--slurm-gpus/--slurm-requeues must be >= 0, --slurm-time >= 1 (min), --slurm-mem > 0 (GB), --slurm-cpus >= 1")
        request.slurm = SlurmOptions(slurm_partition, slurm_gpus, slurm_time, slurm_mem, slurm_cpus, slurm_requeues)
    csv_path = run_benchmark(request, console)
    from bench.distributed import is_main

    if is_main():
        console.print(f"results: {plain(csv_path)}")


@app.command("list")
@user_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False) -> None:
    """Registered methods with parameter counts of the paper-size models (96^3 input, 14 classes)."""
    from methods import count_parameters, list_methods
    from methods.registry import build_on_meta

    rows = []
    for info in list_methods():
        # Counted on the meta device: nothing is allocated or initialised.
        total, trainable = count_parameters(build_on_meta(info.name, size="paper", roi_size=(96, 96, 96)))
        rows.append(
            {
                "name": info.name,
                "family": info.family,
                "params_total": total,
                "params_trainable": trainable,
                "reference": info.reference,
                "weights": info.weights,
                "notes": info.notes,
                "hyperparameters": dict(info.paper),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=list) + "\n")
        return
    table = Table(title="Registered methods (paper-size, 96^3 input, 14 classes); references: bench list --json")
    for column in ("name", "family", "params total (M)", "trainable (M)", "notes"):
        table.add_column(column)
    for row in sorted(rows, key=lambda r: (r["family"], r["name"])):
        total, trainable = f"{row['params_total'] / 1e6:.2f}", f"{row['params_trainable'] / 1e6:.2f}"
        table.add_row(row["name"], row["family"], total, trainable, plain(row["notes"]))
    console.print(table)


@app.command()
@user_errors
def flops(
    input: Annotated[int, typer.Option("--input", help="Cubic input size (voxels) of the counted forward.")] = 96,
    rank: Annotated[int, typer.Option(help="Adapter width r for the per-block adapter table (Figure 1c).")] = 96,
    slice_scale: Annotated[int, typer.Option(help="1: slices at native size; 2: x2 upsampled (the authors' ablation).")] = 1,
    methods: Annotated[str, typer.Option(help="Comma-separated method names, 'all', or 'none' for the adapter table only.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for a Figure 1(c)-style bar chart PNG.")] = None,
) -> None:
    """GMACs (fvcore multiply-accumulates): what each adapter adds to a SAM block, and each method's forward."""
    from bench.flops import adapter_table, method_costs, save_adapter_chart
    from methods import get_method
    from methods.registry import check_input_size

    names = method_names(methods)
    if input < 16 or input % 16:
        raise UserError(f"--input must be a positive multiple of 16 (SAM's patch size), got {input}")
    if rank < 4 or rank % 4:
        raise UserError(f"--rank must be a positive multiple of 4 (TP-Mamba's four branches), got {rank}")
    if slice_scale not in (1, 2):
        raise UserError(f"--slice-scale must be 1 or 2, got {slice_scale}")
    for name in names:
        try:
            check_input_size(get_method(name), (input,) * 3)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    adapters, blocks, uncounted = adapter_table(input, rank, slice_scale)
    rows, method_uncounted = method_costs(names, input) if names else ([], {})
    for op, n in method_uncounted.items():
        uncounted[op] = uncounted.get(op, 0) + n
    uncounted_list = [{"op": op, "count": n} for op, n in sorted(uncounted.items())]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_adapter_chart(adapters, out / "fig1c_adapters.png", f"GMACs added per ViT block, input {input}^3, r = {rank}")
    if as_json:
        payload = {
            "unit": "GMACs",
            "input": input,
            "rank": rank,
            "slice_scale": slice_scale,
            "adapters": adapters,
            "vit_blocks": blocks,
            "methods": rows,
            "uncounted_ops": uncounted_list,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = Table(title=f"GMACs one SAM ViT-B block gains from each adapter: input {input}^3, r = {rank}, slice scale {slice_scale}")
    for column in ("adapter", "GMACs / block", "x LoRA", "params"):
        table.add_column(column, justify="left" if column == "adapter" else "right")
    for r in adapters:
        table.add_row(r["name"], f"{r['gmacs_per_block']:.3f}", f"{r['ratio_to_lora']:g}", f"{r['params']:,}")
    console.print(table)
    console.print(
        f"ViT-B block at {blocks['tokens_per_slice']} tokens per slice: window block {blocks['window_block']:.1f} GMACs "
        f"({blocks['window_block_unpadded']:.1f} without padding each slice to a {blocks['window_size']}x{blocks['window_size']} window, "
        f"so padding costs {blocks['window_padding_cost']:.1f}), global block {blocks['global_block']:.1f}.",
        soft_wrap=True,
    )
    if rows:
        table = Table(title=f"One forward at {input}^3, 14 classes; GMACs = 10^9 multiply-accumulates (fvcore)")
        for column in ("method", "family", "params (M)", "trainable (M)", "GMACs", "published params (M)", "published GMACs"):
            table.add_column(column, justify="left" if column in ("method", "family") else "right")
        for r in rows:
            pub_p = f"{r['published_params'] / 1e6:.1f}" if r["published_params"] else "-"
            pub_g = f"{r['published_gmacs']:.1f}" if r["published_gmacs"] else "-"
            table.add_row(
                r["name"],
                r["family"],
                f"{r['params_total'] / 1e6:.2f}",
                f"{r['params_trainable'] / 1e6:.2f}",
                f"{r['gmacs']:.1f}",
                pub_p,
                pub_g,
            )
        console.print(table)
    if uncounted:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(uncounted.items()))
        console.print(f"not counted (no handle; element-wise ops are left out by convention): {listed}", soft_wrap=True)
    if out is not None:
        console.print(f"chart: {plain(out / 'fig1c_adapters.png')}")


@app.command()
@user_errors
def speed(
    methods: Annotated[str, typer.Option(help="Comma-separated method names, or 'all'.")] = "all",
    input: Annotated[int | None, typer.Option("--input", help="Cubic crop size; default: the profile's crop.")] = None,
    profile: Annotated[str, typer.Option(help="paper, smoke or auto (smoke without CUDA): model sizes and crops per step.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    steps: Annotated[int, typer.Option(help="Timed training steps per method (after 2 warm-up steps).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Training-step time, sliding-window time and peak memory per method, and the loader's crops per second."""
    from bench.config import resolve_profile
    from bench.device import resolve_device
    from bench.provenance import hardware, package_versions
    from bench.speed import loader_crops_per_second, measure
    from methods import get_method
    from methods.registry import check_input_size

    dev = resolve_device(device)
    prof = resolve_profile(profile, has_cuda=dev == "cuda")
    roi = input or prof.roi
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    names = method_names(methods)
    for name in names:
        try:
            check_input_size(get_method(name), (roi,) * 3, prof.model_size)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    loader = loader_crops_per_second(roi, prof.crops_per_case)
    rows = [measure(name, prof.model_size, roi, prof.crops_per_case, dev, steps) for name in names]
    report = {
        "device": dev,
        "hardware": hardware(dev),
        "versions": package_versions(),
        "profile": prof.name,
        "input": roi,
        "loader_crops_per_s": round(loader, 1),
        "methods": rows,
    }
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"Costs on {dev} ({report['hardware'].get('gpu', report['hardware']['cpu'])}), profile {prof.name}, crop {roi}^3")
    for column in ("method", "train step (s)", "crops/s trained", "sliding window (s)", "peak memory (MiB)"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['train_step_s']:.3f}",
            f"{r['train_crops_per_s']:.1f}",
            f"{r['sliding_window_s']:.2f}",
            f"{r['peak_memory_mib']:.0f}",
        )
    console.print(table)
    console.print(
        f"data pipeline: {loader:.0f} crops/s per loader process (a step consumes {prof.crops_per_case}); "
        f"peak memory is {rows[0]['peak_memory_kind'] if rows else 'n/a'}",
        soft_wrap=True,
    )


@app.command()
@user_errors
def report(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder written by bench run.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the report files; default RUNS_DIR/report.")] = None,
) -> None:
    """Table 1 in the paper's style (Markdown, LaTeX, CSV), the paper's figures and report.html, from run files only."""
    from bench.report import write_report
    from bench.runfiles import REPORT_DIR
    from reports import paper_table1

    if not runs_dir.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist")
    try:
        paths = write_report(runs_dir, out or runs_dir / REPORT_DIR, paper_table1())
    except ValueError as exc:
        raise UserError(str(exc)) from None
    names = ", ".join(sorted(p.name for p in paths.values()))
    console.print(f"wrote {len(paths)} files to {plain(paths['report.html'].parent)}: {names}", soft_wrap=True)
    console.print(f"report: {plain(paths['report.html'])}")


@app.command()
@user_errors
def status(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder written by bench run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only: one object per run of the grid.")] = False,
) -> None:
    """The grid of a runs folder: done, running, failed (with the reason), incomplete (a rerun resumes it) and missing."""
    from bench.grid import STATES, grid_counts, scan_grid

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
    from bench.datasource import resolve_dataset
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
    from bench.datasource import ensure_synthetic

    if not 0.25 <= spacing_scale <= 16:
        raise UserError(f"--spacing-scale must be between 0.25 and 16, got {spacing_scale}")
    ensure_synthetic(out, BTCV_LABELLED_IDS, console, spacing_scale)
    console.print(f"wrote {len(BTCV_LABELLED_IDS)} synthetic cases to {plain(out / 'RawData' / 'Training')} (not BTCV: stamped synthetic)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
