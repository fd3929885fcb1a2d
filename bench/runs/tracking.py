"""``bench run --track tensorboard|mlflow[=URI]``: every run of a grid followed in TensorBoard or
MLflow while it trains, through the libraries themselves (``bench.runs.trackers``).

Per run: the resolved configuration as parameters (its hash included), tags (method, fraction,
draw, protocol, where the method comes from), each epoch of log.jsonl as it is written (loss,
learning rate, seconds, validation Dice; the epoch is the step), the final per-organ scores of
every metric and their means, and config.json / summary.json as artifacts. A resumed run continues
the same tracked run: its MLflow id and the last epoch sent are kept in ``RUN/tracking.json``. The
process that holds a run (``bench.runs.claim``) is the only one that tracks it, so ``--jobs`` and
SLURM jobs track their own runs. Per grid, MLflow gets a parent run, its id in the runs folder,
with the report folder as artifacts. MLflow's default store is SQLite under the runs folder.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.errors import UserError
from bench.io import read_json, write_json
from bench.names import unknown_hint
from bench.runs.files import CONFIG_FILE, GRID_TRACKING_FILE, LOG_FILE, SUMMARY_FILE, TRACKING_FILE, read_log
from bench.runs.trackers import MlflowTracker, TensorBoardTracker, flat

KINDS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # kind -> the module its extra installs
TENSORBOARD_DIR = "tensorboard"
FOLLOW_SECONDS = 5.0  # how often log.jsonl is read while a run trains


@dataclass(frozen=True)
class TrackSpec:
    kind: str  # "tensorboard" or "mlflow"
    uri: str = ""  # MLflow's tracking URI; "" for the SQLite store under the runs folder

    def store(self, runs_dir: Path) -> str:
        return self.uri or f"sqlite:///{(Path(runs_dir).resolve() / 'mlflow.db')}"

    def mlflow_run(self, runs_dir: Path, run_id: str | None, name: str, parent: str | None = None) -> MlflowTracker:
        """An MLflow run (``run_id`` continued, else created) in the runs folder's experiment: a local
        store keeps its artifacts beside it, a server where it says."""
        artifacts = None if self.uri else (Path(runs_dir).resolve() / "mlartifacts").as_uri()
        return MlflowTracker(self.store(runs_dir), experiment_name(runs_dir), artifacts, run_id, name, parent)


def parse_track(values: list[str] | tuple[str, ...]) -> tuple[TrackSpec, ...]:
    """``["tensorboard", "mlflow=http://host:5000"]`` -> specs; one line naming a kind that is not
    known or whose extra is not installed."""
    specs = []
    for value in values:
        kind, _, uri = str(value).partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise UserError(f"unknown --track {kind!r}; {unknown_hint(kind, KINDS, 'choose one of')}")
        if importlib.util.find_spec(KINDS[kind]) is None:
            raise UserError(f"--track {kind} needs {kind}: pip install 'sam3d-bench[{kind}]'")
        specs.append(TrackSpec(kind, uri.strip()))
    return tuple(dict.fromkeys(specs))


def experiment_name(runs_dir: Path) -> str:
    return f"sam3d-bench {Path(runs_dir).resolve()}"


class RunTracking:
    """One run in every tracker asked for; ``following`` sends log.jsonl's epochs while it trains."""

    def __init__(self, specs: tuple[TrackSpec, ...], runs_dir: Path, run) -> None:
        self.run_dir = Path(run.run_dir)
        self.state = _read(self.run_dir / TRACKING_FILE)
        new = not self.state
        parent = _read(Path(runs_dir) / GRID_TRACKING_FILE).get("mlflow_parent_run_id")
        self.trackers = []
        for spec in specs:
            if spec.kind == "tensorboard":
                folder = Path(runs_dir) / TENSORBOARD_DIR / run.data / run.method / f"repeat{run.repeat}"
                self.trackers.append(TensorBoardTracker(folder))
            else:
                self.trackers.append(spec.mlflow_run(runs_dir, self.state.get("mlflow_run_id"), run.name, parent))
        config = run.config
        params = {**flat(asdict(config)), "config_hash": run.hash}
        tags = {"method": run.method, "fraction": run.data, "draw": str(run.repeat), "protocol": config.protocol}
        tags["source"] = run.source or "built-in"
        for tracker in self.trackers:
            self.state.update(tracker.start(params, tags, new))
        self._save()

    def _save(self) -> None:
        write_json(self.run_dir / TRACKING_FILE, self.state)

    def sync(self) -> None:
        """Send the epochs of log.jsonl not sent yet."""
        sent = int(self.state.get("epoch_sent", 0))
        for line in read_log(self.run_dir / LOG_FILE):
            if line.epoch > sent:
                for tracker in self.trackers:
                    tracker.epoch(line)
                sent = line.epoch
        if sent != self.state.get("epoch_sent"):
            self.state["epoch_sent"] = sent
            self._save()

    def following(self) -> _Following:
        return _Following(self)

    def finish(self, summary) -> None:
        """The final scores (per organ and their means, every metric), the run's files, the end."""
        scores = {f"test/{metric}/mean": value for metric, value in summary.foreground_mean.items()}
        for organ, metrics in summary.mean.items():
            scores.update({f"test/{metric}/{organ.replace(' ', '_')}": value for metric, value in metrics.items()})
        step = int(self.state.get("epoch_sent", 0))
        for tracker in self.trackers:
            tracker.final(scores, step)
            tracker.artifacts([self.run_dir / CONFIG_FILE, self.run_dir / SUMMARY_FILE])
            tracker.close("FINISHED")

    def failed(self, status: str = "FAILED") -> None:
        for tracker in self.trackers:
            tracker.close(status)


class _Following:
    """A thread that sends new epochs every FOLLOW_SECONDS while the block runs, and the rest at its end."""

    def __init__(self, tracking: RunTracking):
        self.tracking, self.stop = tracking, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(FOLLOW_SECONDS):
            self.tracking.sync()

    def __enter__(self) -> _Following:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.tracking.sync()


def start_grid(specs: tuple[TrackSpec, ...], runs_dir: Path) -> str | None:
    """MLflow's parent run of a runs folder (created once, its id kept there); None without MLflow."""
    spec = next((s for s in specs if s.kind == "mlflow"), None)
    if spec is None:
        return None
    path = Path(runs_dir) / GRID_TRACKING_FILE
    state = _read(path)
    parent = spec.mlflow_run(runs_dir, state.get("mlflow_parent_run_id"), "grid")
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    write_json(path, {**state, "mlflow_parent_run_id": parent.run_id})
    return parent.run_id


def finish_grid(specs: tuple[TrackSpec, ...], runs_dir: Path, report_dir: Path | None) -> list[str]:
    """The report as the parent run's artifacts; the commands that open what was tracked."""
    lines = []
    for spec in specs:
        if spec.kind == "tensorboard":
            lines.append(f"tensorboard --logdir {Path(runs_dir) / TENSORBOARD_DIR}")
            continue
        parent = spec.mlflow_run(runs_dir, _read(Path(runs_dir) / GRID_TRACKING_FILE).get("mlflow_parent_run_id"), "grid")
        if report_dir is not None and report_dir.is_dir():
            parent.artifacts([report_dir])
        parent.close("FINISHED")
        lines.append(f"mlflow ui --backend-store-uri {spec.store(runs_dir)}" if not spec.uri else f"MLflow: {spec.uri}")
    return lines


def _read(path: Path) -> dict:
    try:
        found = read_json(path)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}
