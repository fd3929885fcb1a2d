"""bench run --jobs: several runs at once on this machine, each in its own process with its GPU or
its share of the cores, writing what one job at a time writes."""

from __future__ import annotations

import csv
import json

import pytest

from bench.executors.jobs import job_slots
from tests.conftest import invoke


def test_each_slot_gets_its_gpu_or_none():
    assert job_slots(2, 0) == [[], []] and job_slots(3, 3) == [[0], [1], [2]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "--jobs must be at least 1, got 0"),
        (["--jobs", "two"], "--jobs takes a whole number or auto, got 'two'"),
        (["--jobs", "2", "--executor", "slurm"], "--jobs runs jobs on this machine; with --executor slurm every run is a job already"),
    ],
)
def test_impossible_jobs_are_one_line_exit_2(tiny_synthetic, tmp_path, args, message):
    result = invoke(
        "run", "--methods", "unetr", "--data", "12pct", "--data-root", tiny_synthetic, "--out", tmp_path, "--device", "cpu", *args
    )
    assert result.exit_code == 2 and result.output.strip().endswith(f"error: {message}")


def rows(folder):
    with open(folder / "results.csv") as fh:
        return sorted((r["method"], r["case"], r["organ"], r["dice"], r["nsd"]) for r in csv.DictReader(fh))


@pytest.mark.slow
def test_two_jobs_write_what_one_job_writes_even_when_one_is_killed(tiny_synthetic, tmp_path):
    """A --jobs 2 grid whose unetr job is SIGKILLed after its first epoch: the vnet run finishes
    untouched, the same command resumes unetr alone, and the folder then holds what --jobs 1 wrote."""
    import os
    import signal
    import threading
    import time

    base = ["run", "--methods", "unetr,vnet", "--data", "12pct", "--data-root", tiny_synthetic, "--profile", "smoke", "--device", "cpu"]
    base += ["--epochs", "2", "--threads", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke(*base, "--out", one).exit_code == 0
    victim, other = two / "12pct" / "unetr" / "repeat0", two / "12pct" / "vnet" / "repeat0"
    killed = []

    def kill_unetr_after_its_first_epoch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            try:
                if (victim / "log.jsonl").read_text().strip():
                    pid = json.loads((victim / "running.json").read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_unetr_after_its_first_epoch)
    killer.start()
    first = invoke(*base, "--out", two, "--jobs", "2")
    killer.join()
    assert killed and first.exit_code == 1, first.output
    assert "2 runs in up to 2 jobs at once (1 thread each)" in first.output
    assert "unetr 12pct repeat 0: RuntimeError: job" in first.output and "ended without a result" in first.output
    assert (other / "summary.json").exists() and not (victim / "summary.json").exists()
    vnet_files = {p.name: p.stat().st_mtime_ns for p in other.iterdir()}
    second = invoke(*base, "--out", two, "--jobs", "2")
    assert second.exit_code == 0, second.output
    assert "1 run in up to 2 jobs at once" in second.output and "vnet/repeat0: finished earlier, skipped" in second.output
    epochs = [json.loads(line)["epoch"] for line in (victim / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and not (victim / "failed.json").exists()
    assert {p.name: p.stat().st_mtime_ns for p in other.iterdir()} == vnet_files  # the finished run is untouched
    assert rows(one) == rows(two) and len(rows(two)) == 2 * 6 * 13
    for method in ("unetr", "vnet"):
        first_config, second_config = (json.loads((f / "12pct" / method / "repeat0" / "config.json").read_text()) for f in (one, two))
        assert first_config["config_hash"] == second_config["config_hash"]
        assert second_config["provenance"]["hardware"]["torch_threads"] == "1"
    assert list((two / ".jobs").glob("*/*_log.out"))  # each job's log


def test_a_running_job_shows_its_epoch_loss_and_time(tmp_path):
    from types import SimpleNamespace

    from bench.executors.jobs import progress_line
    from bench.plan.runs import PlannedRun
    from bench.runs.files import LogLine
    from bench.runs.state import done_testing, write_testing

    run = PlannedRun("unetr", "12pct", 1, (), (), tmp_path, config=SimpleNamespace(profile={"epochs": 24}))
    assert progress_line(run, "4711", [1], 5.0) == "unetr 12pct #1  job 4711 (GPU 1)  epoch 0/24  0:05"
    (tmp_path / "log.jsonl").write_text("\n".join(LogLine(e, 1.0 / e, 1e-3, 2.0).to_json() for e in (1, 2)) + "\n")
    assert progress_line(run, "4711", [], 62.0) == "unetr 12pct #1  job 4711  epoch 2/24  loss 0.5000  1:02"
    run.config.profile["epochs"] = 2
    write_testing(tmp_path, 3, 6)  # what the job's lifecycle says while it predicts its test cases
    assert progress_line(run, "4711", [], 62.0) == "unetr 12pct #1  job 4711  epoch 2/2  loss 0.5000  testing case 3/6  1:02"
    done_testing(tmp_path)
    assert progress_line(run, "4711", [], 62.0) == "unetr 12pct #1  job 4711  epoch 2/2  loss 0.5000  1:02"


@pytest.mark.slow
def test_a_job_runs_the_run_it_was_handed_without_deciding_again(tiny_synthetic, tmp_path, monkeypatch):
    """A job gets its grid's decision and its planned run, pickled as submitit sends them, and runs
    it without deciding, planning or loading the protocol again; what its machine gives (threads) it
    takes where it runs."""
    import pickle

    from rich.console import Console

    import splits
    from bench.executors import local
    from bench.pipelines.harness import HARNESS
    from bench.plan import grid as grid_module
    from bench.plan.runs import RunRequest

    request = RunRequest(["unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs", epochs=1)
    grid = grid_module.prepare_grid(request, Console(quiet=True), harness=HARNESS)
    handed = pickle.loads(pickle.dumps(grid.decided.handed_to_jobs(executor="local", jobs=1, threads=1)))
    assert handed.threads == 0 and handed.request.threads == 1 and handed.protocol == grid.protocol

    def decided_again(*args, **kwargs):
        raise AssertionError("a job decided again")

    patched = (
        (grid_module, "decide"),
        (grid_module, "plan_runs"),
        (splits, "load_protocol"),
        (grid_module, "load_protocol"),
    )
    for module, name in patched:
        monkeypatch.setattr(module, name, decided_again)
    assert local.run_handed(handed, grid.runs[0], Console(quiet=True)) == []
    config = json.loads((grid.runs[0].run_dir / "config.json").read_text())
    assert config["config_hash"] == grid.runs[0].hash and config["provenance"]["hardware"]["torch_threads"] == "1"
