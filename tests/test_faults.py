"""Faults that must lose nothing: diverged losses, killed processes, full disks, concurrent writers; and determinism."""

from __future__ import annotations

import csv
import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.io import write_json
from bench.runs.claim import RUNNING_FILE
from bench.runs.costs import read_sessions
from bench.runs.files import SESSION_MARK, SESSIONS_FILE
from bench.runs.results import write_results_csv
from bench.runs.state import scan_grid
from tests.conftest import invoke

FAST = ["--profile", "smoke", "--device", "cpu", "--epochs", "1"]


def grid_args(tiny_synthetic, out, methods="unetr", *extra):
    return ["run", "--methods", methods, "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *extra]


@pytest.mark.slow
def test_a_nan_loss_stops_that_run_with_its_reason_and_the_grid_goes_on(tiny_synthetic, tmp_path, monkeypatch):
    import monai.losses

    real_loss = monai.losses.DiceCELoss

    class DivergingLoss(real_loss):
        """While DIVERGE=1 the loss is NaN, as a diverged run's is; otherwise the real loss."""

        def forward(self, logits, target):
            loss = super().forward(logits, target)
            return loss * float("nan") if os.environ.get("DIVERGE") == "1" else loss

    monkeypatch.setattr(monai.losses, "DiceCELoss", DivergingLoss)
    monkeypatch.setenv("DIVERGE", "1")
    out = tmp_path / "runs"
    first = invoke(*grid_args(tiny_synthetic, out, "unetr"), *FAST)
    assert first.exit_code == 1, first.output
    reason = json.loads((out / "12pct" / "unetr" / "repeat0" / "failed.json").read_text())["reason"]
    assert reason.startswith("FloatingPointError: loss is nan at epoch 1, step 1: training diverged")
    monkeypatch.setenv("DIVERGE", "0")
    second = invoke(*grid_args(tiny_synthetic, out, "nnunet"), *FAST)
    assert second.exit_code == 0, second.output
    status = invoke("status", out)
    assert status.exit_code == 0, status.output
    assert "training diverged" in status.output and "1 done, 0 running, 1 failed, 0 incomplete, 8 missing of 10 runs" in status.output


def test_status_tells_running_from_killed_runs(tmp_path):
    from bench.runs.files import LogLine

    run_dir = tmp_path / "runs" / "100pct" / "unetr" / "repeat0"
    write_json(run_dir / RUNNING_FILE, {"host": os.uname().nodename, "pid": os.getpid(), "started": "now"})
    lines = [LogLine(epoch, 2.0 / epoch, 1e-3, 1.5).to_json() for epoch in (1, 2)]
    (run_dir / "log.jsonl").write_text("\n".join(lines) + '\n{"epoch": 3, "lo')  # the last line cut by a crash
    [state] = scan_grid(tmp_path / "runs")
    assert state.state == "running" and state.epochs_done == 2
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    write_json(run_dir / RUNNING_FILE, {"host": os.uname().nodename, "pid": int(dead), "started": "then"})
    result = invoke("status", tmp_path / "runs", "--json")
    assert result.exit_code == 0
    [row] = json.loads(result.output)
    assert row["state"] == "incomplete" and row["epochs_done"] == 2 and row["run_dir"] == str(run_dir)
    assert invoke("status", tmp_path / "nope").exit_code == 2


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(tiny_synthetic, tmp_path):
    """SIGKILL gives no chance to save: the rerun repeats at most the epochs since the last checkpoint."""
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "bench.cli", *grid_args(tiny_synthetic, out, "nnunet")]
    # Checkpoints at validation epochs only (every 5 in smoke), however slow the machine: the
    # checkpoint the kill leaves is known.
    args = [str(a) for a in args] + ["--profile", "smoke", "--device", "cpu", "--epochs", "8", "--checkpoint-minutes", "1000"]
    run_dir = out / "12pct" / "nnunet" / "repeat0"
    log = run_dir / "log.jsonl"
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    # smoke checkpoints every 5 epochs: kill after the first checkpoint, part-way to the next
    while (not log.exists() or len(log.read_text().splitlines()) < 6) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    killed_after = time.monotonic() - started
    process.wait(timeout=60)
    logged = len(log.read_text().splitlines())
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=False)["epoch"]
    assert process.returncode == -signal.SIGKILL and saved == 5 and 6 <= logged < 8
    state = {s.repeat: s.state for s in scan_grid(out)}[0]
    assert state == "incomplete"  # running.json is left behind, but its process is gone
    again = invoke(*args[3:])  # the same command, in this process: a Python start-up less
    assert again.exit_code == 0, again.output
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == list(range(1, 9))  # the lost epochs were redone once, not logged twice
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 6 and not (run_dir / RUNNING_FILE).exists()
    # The killed session could not record itself: the rerun counted it from its mark.
    killed, finished = read_sessions(run_dir / SESSIONS_FILE)
    assert (killed.outcome, finished.outcome) == ("killed", "finished") and 0 <= killed.train_seconds <= killed_after
    assert summary["cost"]["sessions"] == 2 and not (run_dir / SESSION_MARK).exists()


@pytest.mark.slow
def test_a_full_disk_gives_one_line_and_keeps_the_checkpoint(tiny_synthetic, tmp_path, monkeypatch):
    import bench.io

    real_atomic_write = bench.io.atomic_write

    def disk_full_at_summary(path, write):
        if path.name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_atomic_write(path, write)

    monkeypatch.setattr(bench.io, "atomic_write", disk_full_at_summary)
    out = tmp_path / "runs"
    result = invoke(*grid_args(tiny_synthetic, out, "unetr,nnunet"), *FAST)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write {out / '12pct' / 'unetr' / 'repeat0' / 'summary.json'}: No space left on device"]
    assert "Traceback" not in result.output
    assert (out / "12pct" / "unetr" / "repeat0" / "checkpoint.pt").exists()  # training is not lost
    assert not (out / "12pct" / "nnunet").exists()  # the grid stopped instead of failing every run alike


def test_an_unwritable_runs_folder_fails_before_any_work(tiny_synthetic, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(*grid_args(tiny_synthetic, blocker / "runs", "unetr"), *FAST)
    assert result.exit_code == 2 and result.output.startswith("error: cannot write")
    assert "Not a directory" in result.output and "preprocessing" not in result.output


def _write_runs(runs_dir: str, method: str, count: int) -> None:
    from pathlib import Path

    from tests.conftest import write_finished_run

    for repeat in range(count):
        write_finished_run(Path(runs_dir), "25pct", method, repeat, liver=0.5)
        write_results_csv(Path(runs_dir))


@pytest.mark.slow
def test_two_processes_writing_one_runs_folder_leave_a_complete_results_csv(tmp_path):
    runs = tmp_path / "runs"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_runs, args=(str(runs), method, 8)) for method in ("alpha", "beta")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    with open(runs / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    # the last rebuild of either process saw every summary: 2 methods x 8 draws x 6 cases x 13 organs
    assert len(rows) == 2 * 8 * 6 * 13
    assert {(r["method"], r["repeat"]) for r in rows} == {(m, str(k)) for m in ("alpha", "beta") for k in range(8)}


@pytest.mark.slow
def test_the_same_seed_on_the_same_cpu_gives_identical_dice(tiny_synthetic, tmp_path):
    summaries = []
    for out in (tmp_path / "first", tmp_path / "second"):
        result = invoke(*grid_args(tiny_synthetic, out, "unetr"), "--profile", "smoke", "--device", "cpu", "--epochs", "1")
        assert result.exit_code == 0, result.output
        summaries.append(json.loads((out / "12pct" / "unetr" / "repeat0" / "summary.json").read_text()))
    first, second = ([c["metrics"] for c in s["metric_per_case"]] for s in summaries)
    assert first == second  # exact: every organ's Dice and NSD of every case
    assert any(m["dice"] not in (None, 0.0) for case in first for m in case.values())


def test_a_failure_is_recorded_by_its_root_cause(tmp_path):
    """A SLURM time limit that strikes inside a MONAI transform arrives wrapped in MONAI's RuntimeError."""
    from bench.runs.state import record_failure

    try:
        try:
            raise TimeoutError("Job not requeued because: timed-out too many times.")
        except TimeoutError as inner:
            raise RuntimeError("applying transform <RandCropByPosNegLabeld>") from inner
    except RuntimeError as wrapped:
        failure = record_failure(tmp_path, wrapped, "traceback text")
    assert failure["reason"] == "TimeoutError: Job not requeued because: timed-out too many times."
    assert json.loads((tmp_path / "failed.json").read_text())["error_type"] == "TimeoutError"
