"""A request made ready to run: the device, profile, backbone weights and dataset decided, the
runs planned, the cases preprocessed, and the provenance every run records. Shared by every
executor and checked before the first run starts, so a typo costs nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from bench import distributed
from bench.console import plain, progress_bar
from bench.data.btcv import Dataset, check_trainable
from bench.data.preprocess import cache_dir_for, load_or_preprocess
from bench.data.settings import PreprocessedCase
from bench.data.source import cache_root, data_identity, resolve_dataset
from bench.device import busy_warning, cores_given, resolve_device, set_threads, share_of_cores
from bench.errors import UserError
from bench.evaluation.evaluate import check_scoring_options
from bench.io import check_writable
from bench.names import unknown_hint
from bench.plan.decided import Decided, PreparedGrid
from bench.plan.profiles import Profile, parse_repeats, profile_dict, resolve_profile
from bench.plan.records import make_provenance, stamp
from bench.plan.runs import PlannedRun, RunRequest, checked_options, configure, method_label, parse_method_entry, run_seed
from bench.plan.weights import resolve_backbone_weights
from bench.runs.files import run_dir
from bench.runs.protocol import check_folder, claim_folder
from bench.runs.tracking import parse_track
from splits import load_protocol

# Settings that change how fast a run goes or which runs a command makes, not what a run computes:
# left out of the config hash. own_pipeline_gets_preprocessed does change what nnU-Net's runs
# compute, but it is set by the profile alone, whose name is hashed; leaving it out keeps the runs
# made before it was a field resumable.
_NOT_HASHED = ("num_workers", "checkpoint_minutes", "sw_batch_size", "repeats", "own_pipeline_gets_preprocessed", "track")


def prepare_cases(dataset: Dataset, case_ids, profile: Profile, console: Console) -> tuple[dict[str, PreprocessedCase], dict]:
    """Preprocess (or load from the cache) every case needed; returns cases and timing facts."""
    cache_dir = cache_dir_for(cache_root(), dataset, profile.preprocess)
    cases: dict[str, PreprocessedCase] = {}
    started = time.monotonic()
    cached = 0
    notes: list[str] = []
    with progress_bar(console) as progress:
        task = progress.add_task("preprocessing (cached once)", total=len(case_ids), status="")
        for cid in sorted(case_ids):
            case, was_cached = load_or_preprocess(dataset.cases[cid], profile.preprocess, cache_dir, dataset.labels, notes)
            cases[cid] = case
            cached += was_cached
            progress.update(task, advance=1, status=f"{cached} from cache")
    for line in notes:
        console.print(f"note: {plain(line)}", highlight=False, soft_wrap=True)
    return cases, {"seconds": round(time.monotonic() - started, 2), "from_cache": cached, "cache_dir": str(cache_dir)}


def decide(request: RunRequest, console: Console, announce: Callable[[str], None] | None = None) -> Decided:
    """Check the request and settle everything its runs share; says what kind of numbers they make."""
    from methods import get_method

    protocol = load_protocol(request.protocol)
    draws = protocol.check_fraction(request.data)
    if not request.methods:
        raise UserError("--methods is empty; name at least one method (bench list shows them)")
    infos = [get_method(parse_method_entry(entry)[0]) for entry in request.methods]
    if request.executor not in ("local", "slurm"):
        raise UserError(f"unknown executor {request.executor!r}; {unknown_hint(request.executor, ('local', 'slurm'), 'choose one of')}")
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
    if request.threads is not None and request.threads < 1:
        raise UserError(f"--threads must be at least 1, got {request.threads}")
    request = replace(request, jobs=resolve_jobs(request, device))
    check_scoring_options(request.eval_space, request.nsd_tolerance_mm)
    # --epochs, --roi and --checkpoint-minutes are profile settings; checked (and named) there.
    flags = {"epochs": request.epochs, "roi": request.roi, "checkpoint_minutes": request.checkpoint_minutes}
    flags = {k: v for k, v in flags.items() if v is not None and k not in request.profile_overrides}
    overrides = {**flags, **request.profile_overrides}
    profile = profile.with_overrides(overrides, spelled={k: "--" + k.replace("_", "-") for k in flags})
    weights = None
    backbones = {info.backbone for info in infos if info.backbone is not None}
    if len(backbones) > 1:  # one --sam-checkpoint cannot serve two kinds of backbone
        raise UserError(f"these methods need different backbones ({', '.join(sorted(b.name for b in backbones))}); run them separately")
    if backbones:
        weights = resolve_backbone_weights(backbones.pop(), request.sam_checkpoint, profile.published_size, request.allow_random_backbone)

    repeats = parse_repeats(request.repeats, len(draws))
    tracking = parse_track(request.track or [t for t in profile.track.split(",") if t.strip()])
    check_writable(Path(request.out))
    check_folder(Path(request.out), protocol)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 writes the synthetic data and preprocessing cache first
    dataset = resolve_dataset(request.data_root, protocol.all_ids(), console)
    check_trainable(dataset.labels, str(dataset.root))
    say = announce or console.print
    chosen = {r: draws[r] for r in repeats}
    decided = localize(
        Decided(request, protocol, device, profile, overrides, weights, dataset, chosen, profile.num_workers, tracking=tracking)
    )
    if device == "cpu" and distributed.is_main() and (busy := busy_warning(cores_given(), decided.threads)):
        say(f"[yellow]warning: {plain(busy)}[/yellow]")
    say(f"[bold]{plain(stamp(dataset, profile, weights, overrides))}[/bold]; device {device}")
    if weights is not None:
        say(f"SAM backbone: {plain(weights.description)}")
    if dataset.synthetic:
        say("[yellow]Data: the built-in SYNTHETIC abdomen, not BTCV: the numbers show that the pipeline works and models learn.[/yellow]")
    return decided


def localize(decided: Decided) -> Decided:
    """What depends on the machine this process runs on, taken here: PyTorch's threads (--threads,
    else this process's share of the cores it is given: a SLURM job's allocation, a --jobs job's
    share, a torchrun rank's) and the loader's workers (at most one per thread). A job is handed the
    grid's decision and localizes it on its own node; the request keeps only what the user asked."""
    threads = set_threads(share_of_cores(decided.request.threads, distributed.world_size() * decided.request.jobs))
    return replace(decided, threads=threads, profile=replace(decided.profile, num_workers=min(decided.workers, threads)))


def resolve_jobs(request: RunRequest, device: str) -> int:
    """``--jobs``: a whole number from 1, or auto (one per visible GPU on CUDA, else 1)."""
    import torch

    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if request.jobs == "auto":
        return max(gpus, 1)
    try:
        jobs = int(request.jobs)
    except ValueError:
        raise UserError(f"--jobs takes a whole number or auto, got {request.jobs!r}") from None
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if jobs > 1 and request.executor != "local":
        raise UserError("--jobs runs jobs on this machine; with --executor slurm every run is a job already")
    if jobs > 1 and device == "cuda" and jobs > gpus:
        raise UserError(f"--jobs {jobs} with --device cuda needs {jobs} GPUs, {gpus} visible: one job per GPU")
    if jobs > 1 and distributed.world_size() > 1:
        raise UserError("--jobs starts its own processes; run it once, not under torchrun")
    return jobs


def plan_runs(decided: Decided, identity: str, *, harness: object) -> list[PlannedRun]:
    """Every run the decided request asks for, configured and hashed; ``identity``: the data's
    content identity (``bench.data.source.data_identity``); ``harness``: the pipeline of every
    method that registers none (``bench.pipelines.harness.HARNESS``)."""
    from methods import get_method

    request, profile, protocol, label_set = decided.request, decided.profile, decided.protocol, decided.dataset.labels
    device, weights = decided.device, decided.weights
    if unknown := [organ for organ in protocol.organs if organ not in label_set.organs]:
        raise UserError(f"protocol {protocol.name} scores organs the dataset's labels lack: {', '.join(unknown)}")
    planned, labels = [], set()
    for entry in request.methods:
        name, own = parse_method_entry(entry)
        info = get_method(name)
        pipeline = info.pipeline if info.pipeline is not None else harness
        if request.eval_space not in pipeline.eval_spaces:
            spaces = " or ".join(pipeline.eval_spaces)
            raise UserError(f"{name} can be scored in the {spaces} space only (its pipeline predicts there); drop --eval-space")
        # --set applies to every method named, options in brackets to their method alone.
        options = checked_options(name, {**request.options, **own}, profile)
        hyper = info.hyperparameters(profile.model_size, **options)
        label = method_label(name, options)
        if label in labels:  # named twice: one set of runs
            continue
        labels.add(label)
        for repeat, draw in decided.draws.items():
            run = PlannedRun(label, request.data, repeat, draw.train, draw.test, run_dir(request.out, request.data, label, repeat))
            run.base_method, run.options = name, dict(options)
            run.title, run.backbone, run.pipeline = info.title, info.backbone is not None, pipeline
            run.compute_reference = info.compute_reference
            run.source = "" if info.source.builtin else f"{info.source.describe()}, revision {info.revision}"
            run.scored = protocol.organs
            configure(
                run,
                protocol,
                label_set,
                base_method=name,
                method_revision=info.revision,
                family=info.family,
                hyperparameters=hyper,
                profile={k: v for k, v in profile_dict(profile).items() if k not in _NOT_HASHED},
                preprocess_key=profile.preprocess.key(),
                data_identity=identity,
                device=device,
                processes=distributed.world_size(),
                seed=run_seed(profile, name, request.data, repeat),
                weights=weights.description if info.backbone and weights else info.weights,
                weights_identity=weights.identity if info.backbone and weights else None,
                eval_space=request.eval_space,
                nsd_tolerance_mm=float(request.nsd_tolerance_mm),
                method_source=info.source.provenance(),
            )
            planned.append(run)
    return planned


def prepare_runs(decided: Decided, planned: list[PlannedRun], console: Console) -> PreparedGrid:
    """The grid of ``planned``: every case they read found and preprocessed (or loaded from the cache);
    the runs folder claimed for the request's protocol."""
    dataset, profile, protocol = decided.dataset, decided.profile, decided.protocol
    needed = set()
    for run in planned:
        needed.update(run.train_ids, run.test_ids)
    missing = sorted(c for c in needed if c not in dataset.cases)
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise UserError(f"protocol {protocol.name} names cases that {dataset.root} lacks: {shown} (run bench data check)")
    if distributed.is_main():
        claim_folder(Path(decided.request.out), protocol)
    if any(run.pipeline.needs_preprocessed(profile) for run in planned):
        cases, prep = prepare_cases(dataset, needed, profile, console)
        console.print(f"preprocessing: {len(cases)} cases in {prep['seconds']:.1f} s ({prep['from_cache']} from cache)")
    else:
        cases, prep = {}, {"seconds": 0.0, "from_cache": 0}
        console.print("preprocessing: none by the harness (these methods' own pipelines preprocess the original files)")
    if distributed.is_main():
        distributed.barrier()
    provenance = make_provenance(
        dataset,
        profile=profile.name,
        device=decided.device,
        stamp=stamp(dataset, profile, decided.weights, decided.overrides),
        preprocess_cache=prep.get("cache_dir"),
        sam_weights=decided.weights.description if decided.weights else None,
        overrides=decided.overrides,
    )
    return PreparedGrid(decided, planned, cases, provenance)


def prepare_grid(request: RunRequest, console: Console, announce: Callable[[str], None] | None = None, *, harness: object) -> PreparedGrid:
    """Check the request, find the data, plan the runs (each method through its own pipeline, else
    ``harness``: ``bench.pipelines.harness.HARNESS``) and preprocess the cases they need."""
    decided = decide(request, console, announce)
    identity = data_identity(decided.dataset, decided.protocol.all_ids())
    planned = plan_runs(decided, identity, harness=harness)
    return prepare_runs(decided, planned, console)


def prepare_handed_run(decided: Decided, run: PlannedRun, console: Console) -> PreparedGrid:
    """The grid of one run a job was handed with its grid's decision (``Decided.handed_to_jobs``): nothing
    decided or planned again; the machine's threads and workers taken here, the cases from the cache."""
    return prepare_runs(localize(decided), [run], console)
