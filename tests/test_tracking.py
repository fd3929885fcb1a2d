"""--track: a grid followed in a real MLflow tracking server (started here on 127.0.0.1) and in
TensorBoard's event files, read back with their own readers; a run interrupted and resumed stays
one tracked run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import invoke


def test_a_tracker_that_is_not_known_or_not_installed_is_one_line(tiny_synthetic, tmp_path, monkeypatch):
    import importlib.util

    args = ["run", "--methods", "unetr", "--data-root", tiny_synthetic, "--out", tmp_path, "--profile", "smoke", "--device", "cpu"]
    result = invoke(*args, "--track", "mlfow")
    assert result.exit_code == 2 and "unknown --track 'mlfow'; did you mean 'mlflow'?" in result.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = invoke(*args, "--track", "mlflow")
    assert result.exit_code == 2 and "--track mlflow needs mlflow: pip install 'sam3d-bench[mlflow]'" in result.output
    assert not (tmp_path / "12pct").exists()


def test_the_profile_setting_track_is_the_default_of_the_flag_and_no_part_of_the_hash(tiny_synthetic, tmp_path):
    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import decide, plan_runs
    from bench.plan.runs import RunRequest
    from bench.runs.tracking import TrackSpec

    def decided(**changes):
        return decide(
            RunRequest(["unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs", **changes), Console(quiet=True)
        )

    plain = decided()
    by_profile = decided(profile_overrides={"track": "tensorboard,mlflow=http://127.0.0.1:5000"})
    assert plain.tracking == () and by_profile.tracking == (TrackSpec("tensorboard"), TrackSpec("mlflow", "http://127.0.0.1:5000"))
    assert decided(profile_overrides={"track": "mlflow"}, track=("tensorboard",)).tracking == (TrackSpec("tensorboard"),)
    hashes = [plan_runs(d, "identity", harness=HARNESS)[0].hash for d in (plain, by_profile)]
    assert hashes[0] == hashes[1]  # watching a run does not make it another run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server: a free port, a SQLite store and artifacts in a temporary folder."""
    port, folder = free_port(), tmp_path / "mlflow-server"
    folder.mkdir()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'store.db'}", "--artifacts-destination", (folder / "artifacts").as_uri()]
    # Its own process group: the server starts workers and job consumers, all stopped at the end.
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(server.pid, signal.SIGKILL)
        pytest.fail("the MLflow server did not start in 120 s")
    yield uri
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def epochs_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_grid_in_mlflow_and_tensorboard_is_one_tracked_run_per_run_across_a_resume(mlflow_server, tiny_synthetic, tmp_path):
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs"
    args = ["run", "--methods", "nnunet,unetr", "--data", "12pct", "--repeats", "0", "--data-root", str(tiny_synthetic)]
    args += ["--out", str(out), "--profile", "smoke", "--device", "cpu", "--epochs", "3", "--profile-set", "val_every=1"]
    args += ["--track", f"mlflow={mlflow_server}", "--track", "tensorboard"]
    first = out / "12pct" / "nnunet" / "repeat0"
    process = subprocess.Popen([sys.executable, "-m", "bench.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((first / "log.jsonl").exists() and (first / "log.jsonl").read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 130, stderr
    interrupted_id = json.loads((first / "tracking.json").read_text())["mlflow_run_id"]

    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    assert f"tracked: MLflow: {mlflow_server}" in resumed.output and f"tensorboard --logdir {out / 'tensorboard'}" in resumed.output

    client = MlflowClient(tracking_uri=mlflow_server)
    (experiment,) = [e for e in client.search_experiments() if e.name == f"sam3d-bench {out.resolve()}"]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"grid", "nnunet 12pct #0", "unetr 12pct #0"}  # the resume made no second run
    parent = runs["grid"].info.run_id
    assert [a.path for a in client.list_artifacts(parent)] == ["report"]
    for method in ("nnunet", "unetr"):
        run_dir = out / "12pct" / method / "repeat0"
        tracked = runs[f"{method} 12pct #0"]
        config = json.loads((run_dir / "config.json").read_text())
        assert tracked.info.status == "FINISHED" and tracked.data.tags["mlflow.parentRunId"] == parent
        assert tracked.data.params["config_hash"] == config["config_hash"] and tracked.data.params["method"] == method
        assert (tracked.data.tags["method"], tracked.data.tags["fraction"], tracked.data.tags["draw"]) == (method, "12pct", "0")
        logged = epochs_of(run_dir)
        history = client.get_metric_history(tracked.info.run_id, "train_loss")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(e["epoch"], e["loss"]) for e in logged]
        dice = client.get_metric_history(tracked.info.run_id, "validation_dice")
        assert [m.value for m in sorted(dice, key=lambda m: m.step)] == [e["val_dice"] for e in logged]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert tracked.data.metrics["test_dice_mean"] == pytest.approx(summary["foreground_mean"]["dice"])
        assert tracked.data.metrics["test_hd95_liver"] == pytest.approx(summary["mean"]["liver"]["hd95"])
        assert {a.path for a in client.list_artifacts(tracked.info.run_id)} == {"config.json", "summary.json"}

        events = EventAccumulator(str(out / "tensorboard" / "12pct" / method / "repeat0"))
        events.Reload()
        assert [(s.step, pytest.approx(s.value)) for s in events.Scalars("train/loss")] == [(e["epoch"], e["loss"]) for e in logged]
    assert runs["nnunet 12pct #0"].info.run_id == interrupted_id
