"""``bench run``: dataset -> split -> cached preprocessing -> build -> train -> infer -> score -> results.

Everything a run decides is validated before the first case is touched, so a typo costs nothing;
every finished run is skipped on a rerun and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench import distributed
from bench.config import FRACTIONS, Profile, cache_root, config_hash, parse_repeats, profile_dict, resolve_device, resolve_profile
from bench.data.btcv import Dataset, locate_dataset
from bench.data.preprocess import PreprocessedCase, cache_dir_for, load_or_preprocess
from bench.data.synthetic import COMPLETE_MARKER, SYNTHETIC_VERSION, write_synthetic_dataset
from bench.errors import RunsFailed, UserError
from bench.grid import clear_failure, marked_running, record_failure
from bench.io import check_writable, is_storage_error, read_json, write_json
from bench.provenance import code_revision, hardware, package_versions
from bench.results import TABLE_COLUMNS, load_results, organ_table, summarize, write_results_csv, write_summary
from bench.weights import BackboneWeights, resolve_sam_weights

# Settings that change how fast a run goes, not what it computes: left out of the config hash.
_NOT_HASHED = ("num_workers", "checkpoint_minutes", "sw_batch_size")


@dataclass
class RunRequest:
    methods: list[str]
    data: str = "25pct"
    repeats: str = "all"
    data_root: Path | None = None
    profile: str = "auto"
    device: str = "auto"
    out: Path = Path("runs")
    epochs: int | None = None
    roi: int | None = None
    sam_checkpoint: Path | None = None
    allow_random_backbone: bool = False
    options: dict = field(default_factory=dict)  # hyperparameter overrides (ablations), e.g. {"r": 48}
    executor: str = "local"  # local: runs one after another here; slurm: one SLURM job per run (bench.slurm)
    slurm: object = None  # bench.slurm.SlurmOptions for --executor slurm


@dataclass
class PlannedRun:
    method: str  # the label in paths and tables: name, or name[key=value,...] for a variant
    data: str
    repeat: int
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    run_dir: Path
    config: dict = field(default_factory=dict)
    hash: str = ""
    base_method: str = ""
    options: dict = field(default_factory=dict)


def method_label(name: str, options: dict) -> str:
    """``tpmamba`` or, for an ablation variant, ``tpmamba[planes=dw,r=48]`` (sorted keys)."""
    return name if not options else f"{name}[{','.join(f'{k}={v}' for k, v in sorted(options.items()))}]"


def parse_options(pairs: list[str]) -> dict:
    """``["r=48", "planes=dw", "multiscale=false"]`` -> typed overrides."""
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        lowered = text.strip().lower()
        value: object
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text.strip()
        options[key.strip()] = value
    return options


def synthetic_root() -> Path:
    return cache_root() / f"synthetic-v{SYNTHETIC_VERSION}"


def ensure_synthetic(root: Path, case_ids, console: Console, spacing_scale: float = 1.0) -> Path:
    """Write the synthetic abdomen once (missing cases only); later calls find the marker and return."""
    marker = root / COMPLETE_MARKER
    wanted = {"version": SYNTHETIC_VERSION, "spacing_scale": spacing_scale}
    if marker.exists():
        try:
            found = json.loads(marker.read_text())
        except ValueError:
            found = None
        if found == wanted:
            return root
        raise UserError(f"{root} holds a different synthetic dataset ({found}); choose another folder or remove it")
    case_ids = list(case_ids)
    with _progress(console) as progress:
        task = progress.add_task("synthesizing abdomen CTs", total=len(case_ids), status="")
        write_synthetic_dataset(root, case_ids, spacing_scale, progress=lambda _: progress.advance(task))
    marker.write_text(json.dumps(wanted) + "\n")
    return root


def resolve_dataset(data_root: Path | None, case_ids, console: Console) -> Dataset:
    root = data_root or (Path(os.environ["BENCH_DATA_ROOT"]) if os.environ.get("BENCH_DATA_ROOT") else None)
    if root is not None:
        # A folder written by `bench data synth` stays stamped synthetic wherever it is passed in.
        return locate_dataset(root, synthetic=(Path(root) / COMPLETE_MARKER).exists())
    return locate_dataset(ensure_synthetic(synthetic_root(), case_ids, console), synthetic=True)


def data_identity(dataset: Dataset) -> str:
    """Identity of the data for the config hash: stable when the folder moves, not when files change."""
    if dataset.synthetic:
        return f"synthetic-v{SYNTHETIC_VERSION}"
    sizes = [
        f"{c.case_id}:{c.image.stat().st_size}:{c.label.stat().st_size}"
        for c in dataset.cases.values()
        if c.label and c.image.exists() and c.label.exists()
    ]
    return f"btcv-{zlib.crc32(';'.join(sizes).encode()):08x}"


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def prepare_cases(dataset: Dataset, case_ids, profile: Profile, console: Console) -> tuple[dict[str, PreprocessedCase], dict]:
    """Preprocess (or load from the cache) every case needed; returns cases and timing facts."""
    cache_dir = cache_dir_for(cache_root(), dataset, profile.preprocess)
    cases: dict[str, PreprocessedCase] = {}
    started = time.monotonic()
    cached = 0
    with _progress(console) as progress:
        task = progress.add_task("preprocessing (cached once)", total=len(case_ids), status="")
        for cid in sorted(case_ids):
            case, was_cached = load_or_preprocess(dataset.cases[cid], profile.preprocess, cache_dir)
            cases[cid] = case
            cached += was_cached
            progress.update(task, advance=1, status=f"{cached} from cache")
    return cases, {"seconds": round(time.monotonic() - started, 2), "from_cache": cached, "cache_dir": str(cache_dir)}


def run_seed(profile: Profile, method: str, data: str, repeat: int) -> int:
    return profile.seed * 1_000_003 + zlib.crc32(f"{method}|{data}|{repeat}".encode()) % 1_000_003


def uses_sam(info) -> bool:
    return info.family == "sam-adapter"


def plan_runs(request: RunRequest, profile: Profile, device: str, dataset: Dataset, weights: BackboneWeights | None) -> list[PlannedRun]:
    from methods import get_method
    from methods.registry import check_input_size
    from splits import load_splits

    splits = load_splits()
    draws = splits.train[request.data]
    repeats = parse_repeats(request.repeats, len(draws))
    identity = data_identity(dataset)
    planned = []
    for name in request.methods:
        info = get_method(name)
        try:
            check_input_size(info, (profile.roi,) * 3, profile.model_size, **request.options)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        unknown = sorted(set(request.options) - set(info.paper) - {"size"})
        if unknown:
            raise UserError(f"method {name!r} has no option {unknown[0]!r}; its options: {', '.join(k for k in info.paper if k != 'size')}")
        hyper = info.hyperparameters(profile.model_size, **request.options)
        label = method_label(name, request.options)
        if request.options:  # a bad value fails now, on a toy-size build, not after preprocessing
            from methods import create_model

            try:
                create_model(name, size="smoke", roi_size=(32, 32, 32), **request.options)
            except (TypeError, ValueError) as exc:
                raise UserError(f"{label}: {exc}") from None
        for repeat in repeats:
            run = PlannedRun(
                label, request.data, repeat, draws[repeat], splits.test, Path(request.out) / request.data / label / f"repeat{repeat}"
            )
            run.base_method, run.options = name, dict(request.options)
            run.config = {
                "method": label,
                "base_method": name,
                "method_revision": info.revision,
                "family": info.family,
                "hyperparameters": hyper,
                "data": request.data,
                "repeat": repeat,
                "train_cases": list(run.train_ids),
                "test_cases": list(run.test_ids),
                "profile": {k: v for k, v in profile_dict(profile).items() if k not in _NOT_HASHED},
                "preprocess_key": profile.preprocess.key(),
                "data_identity": identity,
                "device": device,
                "processes": distributed.world_size(),  # torchrun ranks: more crops per step, so part of the hash
                "seed": run_seed(profile, name, request.data, repeat),
                "weights": weights.description if uses_sam(info) and weights else info.weights,
                "weights_identity": weights.identity if uses_sam(info) and weights else None,
            }
            run.hash = config_hash(run.config)
            _check_existing(run)
            planned.append(run)
    return planned


def _check_existing(run: PlannedRun) -> None:
    config_path = run.run_dir / "config.json"
    if config_path.exists():
        try:
            existing = read_json(config_path).get("config_hash")
        except ValueError:
            existing = None
        if existing != run.hash:
            raise UserError(
                f"{run.run_dir} holds a run with a different configuration (hash {existing}, now {run.hash}); "
                "use another --out or remove that folder"
            )


def _provenance(dataset: Dataset, profile: Profile, device: str, prep: dict, weights: BackboneWeights | None) -> dict:
    return {
        "data_source": dataset.source,
        "data_root": str(dataset.root),
        "data_layout": dataset.layout,
        "synthetic": dataset.synthetic,
        "profile": profile.name,
        "device": device,
        "hardware": hardware(device),
        "versions": package_versions(),
        "code_revision": code_revision(),
        "preprocess_cache": prep.get("cache_dir"),
        "sam_weights": weights.description if weights else None,
        "stamp": stamp(dataset, profile, weights),
    }


def stamp(dataset: Dataset, profile: Profile, weights: BackboneWeights | None = None) -> str:
    parts = ["SYNTHETIC data (built-in abdomen, not BTCV)" if dataset.synthetic else f"BTCV at {dataset.root}", f"profile {profile.name}"]
    if profile.name != "paper":
        parts.append(f"{profile.preprocess.spacing_mm:g} mm voxels, {profile.roi}^3 crops, small random-init networks")
    if weights is not None and weights.random:
        parts.append("SAM methods on a random backbone")
    return "; ".join(parts)


def execute_run(
    run: PlannedRun,
    profile: Profile,
    device: str,
    cases: dict[str, PreprocessedCase],
    provenance: dict,
    console: Console,
    weights: BackboneWeights | None = None,
) -> dict:
    """Train, evaluate and summarise one run; returns its summary (reads it back if already finished)."""
    import torch

    from bench.evaluate import evaluate_cases
    from bench.train import steps_per_epoch, train
    from methods import count_parameters, create_model, get_method

    summary_path = run.run_dir / "summary.json"
    if summary_path.exists():
        console.print(f"[dim]{run.run_dir}: finished earlier, skipped[/dim]")
        return read_json(summary_path)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    clear_failure(run.run_dir)  # a retry: the old reason no longer describes this run
    extra = {"backbone_state": weights.state} if weights is not None and uses_sam(get_method(run.base_method)) else {}
    # Seeded initialisation: the same command builds the same network, and a resumed run rebuilds
    # the frozen random backbone its checkpoint leaves out.
    torch.manual_seed(run.config["seed"])
    try:
        model = create_model(run.base_method, size=profile.model_size, roi_size=(profile.roi,) * 3, **run.options, **extra)
    except (TypeError, ValueError) as exc:  # an option value the builder rejects
        raise UserError(f"{run.method}: {exc}") from None
    total, trainable = count_parameters(model)
    config_path = run.run_dir / "config.json"
    if distributed.is_main() and not config_path.exists():
        write_json(
            config_path,
            {
                **run.config,
                "config_hash": run.hash,
                "params_total": total,
                "params_trainable": trainable,
                "provenance": provenance,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    train_cases = [cases[c] for c in run.train_ids]
    test_cases = [cases[c] for c in run.test_ids]
    per_epoch = steps_per_epoch(len(train_cases), profile)
    label = f"{run.method} {run.data} #{run.repeat}"
    started = time.monotonic()
    with _progress(console) as progress:
        task = progress.add_task(label, total=profile.epochs * per_epoch, status="")

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
            run.config["seed"],
            on_step=on_step,
            notify=lambda msg: console.print(f"[yellow]{msg}[/yellow]"),
        )
        progress.update(task, completed=profile.epochs * per_epoch)
    train_seconds = time.monotonic() - started
    if not distributed.is_main():  # rank 0 evaluates and writes the summary; wait for it
        distributed.barrier()
        return {}
    started = time.monotonic()
    per_case = evaluate_cases(state.model, test_cases, profile.roi, profile.sw_overlap, profile.sw_batch_size, device)
    header = {
        "method": run.method,
        "data": run.data,
        "repeat": run.repeat,
        "config_hash": run.hash,
        "stamp": provenance["stamp"],
        "synthetic": provenance["synthetic"],
        "profile": profile.name,
        "weights": run.config["weights"],
        "spacing_mm": profile.preprocess.spacing_mm,
        "metric_convention": "nnU-Net: organ absent in reference and prediction -> NaN (skipped in means); absent in reference only -> 0",
        "nsd_tolerance_mm": 1.0,
        "train_cases": list(run.train_ids),
        "seconds": {"train_this_session": round(train_seconds, 1), "evaluate": round(time.monotonic() - started, 1)},
    }
    if distributed.world_size() > 1:
        header["processes"] = distributed.world_size()
    summary = summarize(per_case, header)
    state.save(run.run_dir / "checkpoint.pt", run.hash, finished=True)
    write_summary(summary_path, summary)
    distributed.barrier()
    return summary


def print_table(console: Console, runs_dir: Path, methods: list[str], data: str, caption: str) -> None:
    results = load_results(runs_dir, methods, data)
    if results.empty:
        return
    table_df = organ_table(results)
    table = Table(title=f"Dice (%) on the test cases, {data} of the training data", caption=caption)
    table.add_column("Method")
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="right")
    order = {m: i for i, m in enumerate(methods)}
    for _, row in sorted(table_df.iterrows(), key=lambda kv: order.get(kv[1]["method"], 99)):
        n = int(row["repeats"])
        cells = [row[f"{c}_mean"] for c in TABLE_COLUMNS]
        table.add_row(f"{row['method']} ({n} draw{'s' if n != 1 else ''})", *[f"{v:.1f}" if v == v else "-" for v in cells])
    console.print(table)


def run_benchmark(request: RunRequest, console: Console, announce: Callable[[str], None] | None = None, render_report: bool = True) -> Path:
    """The whole of ``bench run``. Returns the results.csv path."""
    import torch

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
        from bench.slurm import SlurmOptions

        request.slurm = request.slurm or SlurmOptions()
        device = request.device if request.device != "auto" else ("cuda" if request.slurm.gpus > 0 else "cpu")
        request.device = device
    else:
        device = resolve_device(request.device)
    if distributed.world_size() > 1:
        if request.executor == "slurm":
            raise UserError("--executor slurm submits jobs; run it once, not under torchrun (ask for GPUs with --slurm-gpus)")
        distributed.init(device)
        if not distributed.is_main():  # one voice: rank 0 prints and writes
            console, announce = Console(quiet=True), lambda _: None
    profile = resolve_profile(request.profile, has_cuda=device == "cuda")
    if request.epochs is not None and request.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {request.epochs}")
    if request.roi is not None and request.roi < 8:
        raise UserError(f"--roi must be at least 8 voxels, got {request.roi}")
    profile = profile.with_overrides(epochs=request.epochs, roi=request.roi)
    weights = None
    if any(uses_sam(info) for info in infos):
        weights = resolve_sam_weights(request.sam_checkpoint, profile.model_size, request.allow_random_backbone)
    if device == "cpu":
        torch.set_num_threads(max(torch.get_num_threads(), 1))

    splits = load_splits()
    parse_repeats(request.repeats, len(splits.train[request.data]))
    check_writable(Path(request.out))
    if not distributed.is_main():
        distributed.barrier()  # rank 0 writes the synthetic data and preprocessing cache first
    dataset = resolve_dataset(request.data_root, splits.all_ids(), console)
    say = announce or console.print
    say(f"[bold]{stamp(dataset, profile, weights)}[/bold]; device {device}")
    if weights is not None:
        say(f"SAM backbone: {weights.description}")
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
    cases, prep = prepare_cases(dataset, needed, profile, console)
    if distributed.is_main():
        distributed.barrier()
    console.print(f"preprocessing: {len(cases)} cases in {prep['seconds']:.1f} s ({prep['from_cache']} from cache)")
    provenance = _provenance(dataset, profile, device, prep, weights)
    failures, total = [], len(planned)
    try:
        if request.executor == "slurm":
            from bench.slurm import submit_and_wait

            failures = submit_and_wait(request, planned, request.slurm, console)
            planned = []  # the jobs ran them
        if not distributed.is_main():
            for run in planned:
                execute_run(run, profile, device, cases, provenance, console, weights)
            return Path(request.out) / "results.csv"
        for run in planned:
            try:
                with marked_running(run.run_dir):
                    execute_run(run, profile, device, cases, provenance, console, weights)
            except Exception as exc:  # noqa: BLE001 - one broken run (OOM, NaN, a bug) must not cost the rest of the grid
                # Bad input and a full or read-only disk are not the run's fault: every later run would fail alike.
                if isinstance(exc, UserError) or is_storage_error(exc):
                    raise
                failure = record_failure(run.run_dir, exc, traceback.format_exc())
                if distributed.active():  # the other ranks wait in a collective for this one: end them all
                    raise
                failures.append(f"{run.method} {run.data} repeat {run.repeat}: {failure['reason']}")
                console.print(f"[red]failed[/red] {run.run_dir}: {failure['reason']} (recorded in failed.json; going on)", soft_wrap=True)
            write_results_csv(Path(request.out))
    finally:
        # Whatever finished is in results.csv even if a later run fails or is interrupted.
        if distributed.is_main():
            csv_path = write_results_csv(Path(request.out))
    labels = [method_label(m, request.options) for m in request.methods]
    print_table(console, Path(request.out), labels, request.data, provenance["stamp"])
    if render_report:
        from bench.report import write_report
        from reports import paper_table1

        paths = write_report(Path(request.out), Path(request.out) / "report", paper_table1())
        say(f"report: {paths['report.html']} (tables: {paths['table1.md'].parent})")
    if failures:
        raise RunsFailed(f"{len(failures)} of {total} runs failed (reasons in their failed.json; rerun to retry): " + "; ".join(failures))
    return csv_path
