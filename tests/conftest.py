from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.data.labels import BTCV_LABELLED_IDS

TEST_CASES = ("0035", "0036", "0037", "0038", "0039", "0040")  # the committed test split


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache and no data root from the environment."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """The synthetic abdomen at 6x the voxel size (same anatomy, ~200x fewer voxels), written once."""
    from rich.console import Console

    from bench.data.source import ensure_synthetic

    root = tmp_path_factory.mktemp("tiny-synthetic")
    ensure_synthetic(root, BTCV_LABELLED_IDS, Console(quiet=True), spacing_scale=6.0)
    return root


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def built_in_methods():
    """The methods this repository registers: a test about them must not take in a plugin that
    happens to be installed beside it (a scaffolded ``myadapter``, say)."""
    from methods import list_methods

    return [info for info in list_methods() if info.source.builtin]


def invoke(*args):
    """``bench`` in this process; arguments may be paths or numbers."""
    from bench.cli.__main__ import app

    return CliRunner().invoke(app, [str(a) for a in args])


def write_finished_run(
    runs: Path,
    data: str,
    method: str,
    repeat: int,
    liver: float,
    spleen: float = math.nan,
    shift: float = 0.0,
    epochs: int = 3,
    sessions: list | None = None,
    gmacs: float | None = None,
    compute_reference: bool = False,
):
    """A finished run as bench run leaves it (config.json, log.jsonl, summary.json), written through
    the run-file records. Per case: liver and spleen Dice as given (NaN: the organ is in neither
    volume), stomach rising from 0.4 by 0.05 per case plus ``shift``, every other organ 0.5; NSD
    alike, HD95 20 mm x (1 - Dice) for liver and spleen, 12 mm falling by 1 per case for stomach,
    10 mm elsewhere; 100 voxels of an organ in the reference, Dice x 100 in the prediction.
    ``sessions`` (``bench.runs.costs.SessionCost``): written to sessions.jsonl and summed into the
    summary's cost; without them the run is one scored before runs recorded their cost."""
    from dataclasses import asdict

    from bench.data.labels import ORGANS
    from bench.runs.costs import RunCost, append_session
    from bench.runs.files import CONFIG_FILE, LOG_FILE, SESSIONS_FILE, SUMMARY_FILE, CaseScores, ConfigFile, LogLine, Provenance, RunConfig
    from bench.runs.results import summarize

    run_dir = Path(runs) / data / method / f"repeat{repeat}"
    cases = []
    for i, case in enumerate(TEST_CASES):
        metrics = {o: {"dice": 0.5, "nsd": 0.5, "hd95": 10.0} for o in ORGANS}
        metrics["liver"] = {"dice": liver, "nsd": liver, "hd95": 20.0 * (1 - liver)}
        metrics["spleen"] = {"dice": spleen, "nsd": spleen, "hd95": 20.0 * (1 - spleen)}
        metrics["stomach"] = {"dice": 0.4 + 0.05 * i + shift, "nsd": 0.4, "hd95": 12.0 - i}
        for organ_metrics in metrics.values():  # voxel counts: 100 in the reference, Dice x 100 predicted
            present = organ_metrics["dice"] == organ_metrics["dice"]
            organ_metrics.update(n_ref=100 if present else 0, n_pred=round(100 * organ_metrics["dice"]) if present else 0)
        cases.append(CaseScores(case, metrics))
    stamp = "SYNTHETIC data (built-in abdomen, not BTCV); profile smoke"
    provenance = Provenance(
        data_source="synthetic",
        data_root="/data/synthetic",
        data_layout="flat",
        synthetic=True,
        profile="smoke",
        device="cpu",
        hardware={"cpu": "test cpu"},
        versions={"torch": "2.x"},
        code_revision="abc1234",
        preprocess_cache=None,
        sam_weights=None,
        stamp=stamp,
        compute_reference=compute_reference,
    )
    train = [f"{i:04d}" for i in range(1, 4)]
    config = RunConfig(
        method=method,
        base_method=method.split("[")[0],
        method_revision=1,
        family="test",
        hyperparameters={},
        data=data,
        repeat=repeat,
        train_cases=train,
        test_cases=list(TEST_CASES),
        profile={"name": "smoke"},
        preprocess_key="test",
        data_identity="synthetic-v1",
        device="cpu",
        processes=1,
        seed=repeat,
        weights="random init",
        weights_identity=None,
        eval_space="original",
        nsd_tolerance_mm=1.0,
    )
    created = "2026-01-01T00:00:00+00:00"
    ConfigFile(config, config.hash(), 1_500_000, 500_000, provenance, created, gmacs, [32, 32, 32] if gmacs else None).write(
        run_dir / CONFIG_FILE
    )
    for session in sessions or []:
        append_session(run_dir / SESSIONS_FILE, session)
    lines = [LogLine(e, 1.0 / e, 1e-3, 1.0, val_dice=0.2 * e).to_json() for e in range(1, epochs + 1)]
    (run_dir / LOG_FILE).write_text("".join(f"{line}\n" for line in lines))
    summary = summarize(
        cases,
        method=method,
        data=data,
        repeat=repeat,
        config_hash=config.hash(),
        stamp=stamp,
        synthetic=True,
        profile="smoke",
        weights="random init",
        spacing_mm=1.5,
        eval_space="original",
        metric_convention="test",
        nsd_tolerance_mm=1.0,
        train_cases=train,
        seconds={"train_this_session": 1.0, "evaluate": 1.0},
        cost=asdict(RunCost.of(sessions)) if sessions else None,
    )
    summary.write(run_dir / SUMMARY_FILE)
    return run_dir


def _counted_then_called(module_name, function, log, call, args):
    """In a spawned process: ``module_name.function`` writes a line to ``log`` each time it runs,
    then ``call(*args)`` (a function of that module) runs."""
    import importlib

    module = importlib.import_module(module_name)
    real = getattr(module, function)

    def counted(*a, **kw):
        with open(log, "a") as fh:
            fh.write(f"{function}\n")
        return real(*a, **kw)

    setattr(module, function, counted)
    getattr(module, call)(*args)


def _released_together(start, *payload):
    start.wait()
    _counted_then_called(*payload)


def calls_when_started_together(module_name: str, function: str, call: str, args: tuple, log: Path, processes: int = 2) -> int:
    """How many times ``module_name.function`` ran when ``processes`` processes called
    ``module_name.call(*args)`` at the same moment. Spawned, not forked: a child forked after
    PyTorch's thread pool has started can hang."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_released_together, args=(start, module_name, function, log, call, args)) for _ in range(processes)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(timeout=120)
        if w.exitcode is None:
            w.kill()
    assert [w.exitcode for w in workers] == [0] * processes
    return len(log.read_text().splitlines()) if log.exists() else 0
