"""The runs folder, defined once: where a run's files are, what they are called, and the typed records
they hold (``RunConfig`` and ``ConfigFile`` with ``Provenance`` for config.json, ``LogLine`` for
log.jsonl, ``RunSummary`` of ``CaseScores`` for summary.json). Every reader and writer goes through
these names; a file that lacks a field raises ``RunFileError`` naming it.

```
RUNS_DIR/<data>/<method label>/repeat<k>/config.json     resolved configuration, its hash, provenance
                                         log.jsonl       one LogLine per epoch
                                         checkpoint.pt   latest training state (weights only once finished)
                                         predictions/    --save-predictions: label<case>.nii.gz on each label file's grid
                                         summary.json    per case and organ: metrics; means; the run's cost
                                         sessions.jsonl  per session: time, steps, peak memory, device
                                         failed.json     only after a failure: reason, traceback, epochs done
                                         running.json    while a process works on the run
                                         submitted.json  --executor slurm: the job that will run it
RUNS_DIR/results.csv, costs.csv                          long table and one row per run, rebuilt from the summaries
RUNS_DIR/report/                                         bench report's output
RUNS_DIR/.jobs/, .slurm/                                 --jobs and SLURM jobs' logs
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.data.labels import ORGANS, LabelSet
from bench.io import read_json, write_json
from splits import DEFAULT_PROTOCOL

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"  # the checkpoint before the latest, until the run finishes
RECOVERED_FILE = "recovered.json"  # unreadable checkpoints moved aside, and where training resumed from
SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed.json"
PREDICTIONS_DIR = "predictions"
RESULTS_CSV = "results.csv"
REPORT_DIR = "report"
REPORT_LOCK = ".report.lock"  # processes sharing a runs folder write its report in turn
REPORT_DIGEST = ".results.sha256"  # in REPORT_DIR: the results.csv the report was written from
RESULTS_LOCK = ".results.lock"  # processes sharing a runs folder rebuild results.csv in turn
JOBS_DIR = ".jobs"  # --jobs: submitit's per-job logs
SLURM_DIR = ".slurm"  # --executor slurm: submitit's per-job logs
TRACKING_FILE = "tracking.json"  # --track: the run's MLflow id and the last epoch sent to its trackers
GRID_TRACKING_FILE = ".tracking.json"  # in the runs folder: the grid's MLflow parent run
SESSIONS_FILE = "sessions.jsonl"  # what each session working on the run cost (bench.runs.costs)
SESSION_MARK = ".session.json"  # while a session works on the run: its start, touched as it goes (a killed one's time)
COSTS_CSV = "costs.csv"  # in the runs folder: one row per finished run, rebuilt beside results.csv
TESTING_FILE = ".testing.json"  # while a run predicts its test cases: which one, of how many (the --jobs board reads it)


def prediction_path(run_dir: Path, case_id: str) -> Path:
    """Where --save-predictions writes a test case's label map."""
    return Path(run_dir) / PREDICTIONS_DIR / f"label{case_id}.nii.gz"


def run_dir(runs_dir: Path, data: str, method_label: str, repeat: int) -> Path:
    return Path(runs_dir) / data / method_label / f"repeat{repeat}"


def is_finished(folder: Path) -> bool:
    """A run is finished once its summary is written (the last file a run writes)."""
    return (Path(folder) / SUMMARY_FILE).exists()


@dataclass(frozen=True)
class LogLine:
    """One epoch of log.jsonl; ``val_dice`` only on validation epochs."""

    epoch: int
    loss: float
    lr: float
    seconds: float
    val_dice: float | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


def read_log(log_path: Path) -> list[LogLine]:
    """log.jsonl's epochs; a line cut by a crash is skipped, the epochs before it still count."""
    if not Path(log_path).exists():
        return []
    lines = []
    for text in Path(log_path).read_text().splitlines():
        try:
            entry = json.loads(text)
            lines.append(LogLine(**entry))
        except (ValueError, TypeError):
            continue
    return lines


def epochs_logged(folder: Path) -> int:
    return max((line.epoch for line in read_log(Path(folder) / LOG_FILE)), default=0)


class RunFileError(ValueError):
    """A run file that cannot be read as its record: unreadable, not JSON, or lacking fields."""


def _record(cls, payload: Any, path: Path):
    """``cls`` from a JSON object; every field without a default must be there (keys a newer
    version added are ignored, so an older bench can still read the folder)."""
    if not isinstance(payload, dict):
        raise RunFileError(f"{path}: expected a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in payload]
    if missing:
        raise RunFileError(f"{path} lacks {', '.join(missing)} (written by another version of bench?)")
    return cls(**{k: v for k, v in payload.items() if k in names})


def _read_record(cls, path: Path):
    return _record(cls, read_json_object(path), path)


@dataclass(frozen=True)
class Provenance:
    """What the numbers were made with; not part of the configuration hash."""

    data_source: str  # "folder", "env" or "synthetic": how the dataset was found
    data_root: str
    data_layout: str
    synthetic: bool
    profile: str
    device: str
    hardware: dict[str, str]
    versions: dict[str, str | None]
    code_revision: str
    preprocess_cache: str | None
    sam_weights: str | None  # None: no method of the grid has a SAM backbone
    stamp: str  # one line that says what kind of numbers these are (synthetic, smoke, random backbone)
    # What a method with its own pipeline decided for this run (nnU-Net: its plan); None otherwise.
    pipeline: dict[str, Any] | None = None
    method_title: str | None = None  # the method's title (methods.registry.MethodInfo), for report rows
    method_source: str | None = None  # a plugin method's distribution, version and revision, for report rows; None: built in
    profile_overrides: dict[str, Any] | None = None  # what the command changed in the profile (its values are in the config)
    compute_reference: bool = False  # the method is a compute-matched baseline (methods.registry.MethodInfo), for reports


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result; ``hash()`` names the configuration."""

    method: str  # label: name, or name[key=value,...] for a variant
    base_method: str
    method_revision: int
    family: str
    hyperparameters: dict[str, Any]
    data: str
    repeat: int
    train_cases: list[str]
    test_cases: list[str]
    profile: dict[str, Any]
    preprocess_key: str
    data_identity: str
    device: str
    processes: int  # torchrun ranks: more crops per step
    seed: int
    weights: str
    weights_identity: str | None
    eval_space: str  # "original": each label file's grid; "preprocessed": the profile's grid
    nsd_tolerance_mm: float
    # Which cases each draw trains and tests on (splits.Protocol.name; the runs folder's protocol.json).
    # Files written before protocols existed were all made under the default.
    protocol: str = DEFAULT_PROTOCOL
    # The dataset's organs in label-value order (bench.data.labels.LabelSet); before label sets: BTCV's.
    labels: tuple[str, ...] = ORGANS
    # A plugin method's module, distribution and version (methods.plugins.MethodSource); None: built in.
    method_source: dict[str, str | None] | None = None

    @property
    def label_set(self) -> LabelSet:
        return LabelSet(tuple(self.labels))

    def hash(self) -> str:
        fields = asdict(self)
        fields["labels"] = list(self.labels)  # the same hash whether read back (a list) or planned (a tuple)
        if fields["method_source"] is None:  # built-in runs keep the hashes they had before plugins existed
            del fields["method_source"]
        return config_hash(fields)


@dataclass(frozen=True)
class ConfigFile:
    """config.json: the configuration, its hash, the built network's size and the provenance."""

    config: RunConfig
    config_hash: str
    params_total: int
    params_trainable: int
    provenance: Provenance
    created: str
    gmacs: float | None = None  # one forward of the network at gmacs_input (methods.macs); None: not counted
    gmacs_input: list[int] | None = None

    def write(self, path: Path) -> None:
        # Flat on disk: the configuration's keys at the top level, as its hash was computed.
        extra = {k: v for k, v in asdict(self).items() if k != "config"}
        write_json(path, {**asdict(self.config), **extra})

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        payload = read_json_object(path)
        config = _record(RunConfig, payload, path)
        rest = {k: payload.get(k) for k in ("config_hash", "params_total", "params_trainable", "created")}
        missing = [k for k, v in rest.items() if v is None] + ([] if "provenance" in payload else ["provenance"])
        if missing:
            raise RunFileError(f"{path} lacks {', '.join(missing)} (written by another version of bench?)")
        counted = {k: payload.get(k) for k in ("gmacs", "gmacs_input")}
        return cls(config=config, provenance=_record(Provenance, payload["provenance"], path), **rest, **counted)


def read_json_object(path: Path) -> dict:
    try:
        payload = read_json(path)
    except (OSError, ValueError) as exc:
        raise RunFileError(f"cannot read {path}: {exc}") from None
    if not isinstance(payload, dict):
        raise RunFileError(f"{path}: expected a JSON object")
    return payload


def config_hash_in(folder: Path) -> str | None:
    """The configuration hash a run folder holds; None when it has no readable config.json."""
    try:
        value = read_json_object(Path(folder) / CONFIG_FILE).get("config_hash")
    except RunFileError:
        return None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class CaseScores:
    """One test case: organ -> metric name -> value (NaN where the organ is in neither volume)."""

    case: str
    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class RunSummary:
    """summary.json, the last file a run writes: how it was scored, per-case metrics and their means."""

    method: str
    data: str
    repeat: int
    config_hash: str
    stamp: str
    synthetic: bool
    profile: str
    weights: str
    spacing_mm: float | None  # the profile's voxel size (the preprocessed grid); None for external predictions
    eval_space: str
    metric_convention: str
    nsd_tolerance_mm: float
    train_cases: list[str]
    seconds: dict[str, float]
    metric_per_case: list[CaseScores]
    mean: dict[str, dict[str, float]]  # organ -> metric -> mean over cases (NaN skipped)
    foreground_mean: dict[str, float]  # metric -> mean over organs
    processes: int = 1
    cost: dict[str, Any] | None = None  # bench.runs.costs.RunCost; None: scored before runs recorded their cost

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        summary = _read_record(cls, path)
        cases = [_record(CaseScores, case, path) for case in summary.metric_per_case]
        cases = [CaseScores(c.case, _nan_for_null(c.metrics)) for c in cases]
        organs = list(summary.mean) if isinstance(summary.mean, dict) and summary.mean else list(ORGANS)  # its label set
        # A metric registered after the run was scored is simply absent ("not scored"); an organ is not.
        for case in cases:
            if missing := [organ for organ in organs if not isinstance(case.metrics.get(organ), dict)]:
                raise RunFileError(f"{path}: case {case.case} lacks {', '.join(missing[:3])}")
        means = {"mean": _nan_for_null(summary.mean), "foreground_mean": _nan_for_null(summary.foreground_mean)}
        return dataclasses.replace(summary, metric_per_case=cases, **means)


def _nan_for_null(value):
    """JSON has no NaN, so write_json stores it as null; metrics read back as NaN again."""
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    return math.nan if value is None else value


def config_hash(config: dict[str, Any]) -> str:
    """Hash of what determines a run's result (provenance such as times and versions excluded)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
