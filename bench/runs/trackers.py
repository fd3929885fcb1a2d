"""The experiment trackers a grid can be watched in, through their own libraries: TensorBoard's
event files (``torch.utils.tensorboard``) and MLflow (a tracking server, or a SQLite store under the
runs folder). Each gets the same calls from ``bench.runs.tracking``: a run's parameters and tags
once, each epoch of log.jsonl, the final scores, its files as artifacts, and its end."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from bench.runs.files import LogLine

MLFLOW_BATCH = 100  # MLflow takes at most 100 parameters or 1000 metrics per log_batch call
MLFLOW_VALUE_CHARS = 6000  # and parameter values up to 6000 characters


def epoch_scalars(line: LogLine) -> dict[str, float]:
    """What one line of log.jsonl is in a tracker: loss, learning rate, seconds, validation Dice."""
    scalars = {"train/loss": line.loss, "train/lr": line.lr, "train/seconds": line.seconds}
    if line.val_dice is not None:
        scalars["validation/dice"] = line.val_dice
    return scalars


class TensorBoardTracker:
    """One run's event files in ``folder`` (``tensorboard --logdir RUNS/tensorboard`` shows the grid)."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def start(self, params: dict[str, str], tags: dict[str, str], new: bool) -> dict:
        if new:
            table = "\n".join(f"| {k} | {v} |" for k, v in {**tags, **params}.items())
            self.writer.add_text("configuration", "| setting | value |\n|---|---|\n" + table, 0)
        return {}

    def epoch(self, line: LogLine) -> None:
        for name, value in epoch_scalars(line).items():
            self.writer.add_scalar(name, value, line.epoch)
        self.writer.flush()

    def final(self, scores: dict[str, float], step: int) -> None:
        for name, value in scores.items():
            self.writer.add_scalar(name, value, step)

    def artifacts(self, paths: Iterable[Path]) -> None:
        """TensorBoard keeps no files; the run folder has them."""

    def close(self, status: str) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run: created the first time, continued (its id in the run folder) when resumed."""

    def __init__(self, uri: str, experiment: str, artifacts: str | None, run_id: str | None, name: str, parent: str | None):
        from mlflow import MlflowClient

        for noisy in ("mlflow", "alembic"):  # their INFO lines (creating tables, ...) are not the grid's progress
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment, artifact_location=artifacts)
        if run_id is None:
            tags = {"mlflow.runName": name, **({"mlflow.parentRunId": parent} if parent else {})}
            run_id = self.client.create_run(experiment_id, tags=tags).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def start(self, params: dict[str, str], tags: dict[str, str], new: bool) -> dict:
        from mlflow.entities import Param, RunTag

        if new:  # parameters cannot change once logged; a resumed run has the same configuration (its hash)
            items = [Param(k[:250], str(v)[:MLFLOW_VALUE_CHARS]) for k, v in params.items()]
            for i in range(0, len(items), MLFLOW_BATCH):
                self.client.log_batch(self.run_id, params=items[i : i + MLFLOW_BATCH])
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        return {"mlflow_run_id": self.run_id}

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(name.replace("/", "_"), float(v), now, step) for name, v in values.items() if v == v]
        for i in range(0, len(items), 10 * MLFLOW_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + 10 * MLFLOW_BATCH])

    def epoch(self, line: LogLine) -> None:
        self._metrics(epoch_scalars(line), line.epoch)

    def final(self, scores: dict[str, float], step: int) -> None:
        self._metrics(scores, step)

    def artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def flat(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested configuration as ``key.subkey -> text`` parameters (lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat(value, name + "."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out
