"""One trainer per run: a run is claimed before it is trained; a live holder is left alone, a gone
one taken over by exactly one process; several bench run processes share one runs folder."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest

import bench.runs.claim as claim_module
from bench.io import write_json
from bench.runs.claim import RUNNING_FILE, claimed, is_running, process_start, try_claim


def a_dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def holder(pid, host=None, **extra):
    return {"host": host or socket.gethostname(), "pid": pid, "started": "2026-12-03T10:00:00+00:00", "token": "theirs", **extra}


def test_a_claim_is_exclusive_and_names_its_holder(tmp_path):
    first = try_claim(tmp_path / "run")
    assert not isinstance(first, str)
    written = json.loads((tmp_path / "run" / RUNNING_FILE).read_text())
    assert written["pid"] == os.getpid() and written["host"] == socket.gethostname() and written["pid_start"] == process_start(os.getpid())
    second = try_claim(tmp_path / "run")  # as another process of ours would find it: its holder is alive
    assert second == f"pid {os.getpid()} on {socket.gethostname()} since {written['started']}"
    first.release()
    assert not (tmp_path / "run" / RUNNING_FILE).exists()


def test_a_claim_released_by_another_token_is_left_alone(tmp_path):
    mine = try_claim(tmp_path)
    write_json(tmp_path / RUNNING_FILE, holder(os.getpid()))  # someone took it over meanwhile
    mine.release()
    assert (tmp_path / RUNNING_FILE).exists()


@pytest.mark.parametrize(
    ("claim", "gone"),
    [
        (lambda: holder(a_dead_pid()), True),
        (lambda: holder(os.getpid(), pid_start="1"), True),  # the pid now belongs to another process
        (lambda: holder(os.getpid(), pid_start=process_start(os.getpid())), False),
        (lambda: holder(1234, host="node-that-is-elsewhere"), False),  # another host, heartbeat fresh
    ],
)
def test_a_gone_holder_is_taken_over_and_a_live_one_is_not(tmp_path, claim, gone):
    stale = claim()
    write_json(tmp_path / RUNNING_FILE, stale)
    got = try_claim(tmp_path)
    if gone:
        assert got.took_over == f"pid {stale['pid']} on {stale['host']}, since {stale['started']}"
        assert json.loads((tmp_path / RUNNING_FILE).read_text())["token"] == got.token
    else:
        assert isinstance(got, str) and got.startswith(f"pid {stale['pid']} on {stale['host']}")


def test_another_hosts_claim_without_a_heartbeat_is_taken_over(tmp_path):
    write_json(tmp_path / RUNNING_FILE, holder(1234, host="node-that-is-elsewhere"))
    ten_minutes_ago = time.time() - 600
    os.utime(tmp_path / RUNNING_FILE, (ten_minutes_ago, ten_minutes_ago))
    assert try_claim(tmp_path).endswith(", last heartbeat 600 s ago")  # still within the 15 minutes
    old = time.time() - claim_module.STALE_AFTER_S - 60
    os.utime(tmp_path / RUNNING_FILE, (old, old))
    assert "node-that-is-elsewhere" in try_claim(tmp_path).took_over


def test_a_slurm_jobs_own_claim_from_before_its_requeue_is_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    write_json(tmp_path / RUNNING_FILE, holder(1234, host="node-before-requeue", slurm_job="4242"))
    assert is_running(tmp_path) == (False, "")
    assert "SLURM job 4242" in try_claim(tmp_path).took_over


def test_the_heartbeat_keeps_the_claim_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(claim_module, "HEARTBEAT_S", 0.05)
    with claimed(tmp_path) as held:
        os.utime(held.path, (0, 0))
        time.sleep(0.5)
        assert held.path.stat().st_mtime > time.time() - 5
    assert not held.path.exists()


def _race(run_dir, start, results, done):
    start.wait()
    got = try_claim(run_dir)
    results.put("claimed" if not isinstance(got, str) else got)
    done.wait()  # stay alive: a winner that exited would be a gone holder again


@pytest.mark.slow
def test_of_four_processes_taking_over_one_stale_claim_exactly_one_wins(tmp_path):
    write_json(tmp_path / RUNNING_FILE, holder(a_dead_pid()))
    context = multiprocessing.get_context("spawn")  # not fork: a forked child inherits locks other threads held
    start, done, results = context.Event(), context.Event(), context.Queue()
    workers = [context.Process(target=_race, args=(tmp_path, start, results, done)) for _ in range(4)]
    for w in workers:
        w.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    done.set()
    for w in workers:
        w.join(timeout=60)
    assert outcomes.count("claimed") == 1, outcomes
    assert all(o == "claimed" or o.startswith("pid ") or o == "another process taking it over" for o in outcomes)


def bench_command(*args) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *(str(a) for a in args)]


@pytest.mark.slow
def test_two_processes_on_one_folder_train_each_run_once(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = bench_command("run", "--methods", "unetr", "--data", "12pct", "--repeats", "0,1,2", "--data-root", tiny_synthetic)
    args += ["--profile", "smoke", "--device", "cpu", "--epochs", "2", "--threads", "1", "--out", str(out)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob(f"12pct/unetr/repeat*/{RUNNING_FILE}")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert "held by pid" in outputs[1] and "left to it" in outputs[1]
    for repeat in range(3):
        run_dir = out / "12pct" / "unetr" / f"repeat{repeat}"
        epochs = [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
        assert epochs == [1, 2], (repeat, epochs)  # trained once: every epoch logged once
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["config_hash"] == json.loads((run_dir / "config.json").read_text())["config_hash"]
        assert len(summary["metric_per_case"]) == 6 and not (run_dir / RUNNING_FILE).exists()
    assert sum("(already written from these results)" in o for o in outputs) == 1  # one process wrote the report
    with open(out / "results.csv") as fh:
        assert sorted({line.split(",")[2] for line in list(fh)[1:]}) == ["0", "1", "2"]


@pytest.mark.slow
def test_a_sigkilled_holder_and_its_damaged_checkpoint_are_recovered_by_a_rerun(tiny_synthetic, tmp_path):
    import signal

    from tests.conftest import invoke

    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--profile", "smoke"]
    args += ["--device", "cpu", "--epochs", "5", "--checkpoint-minutes", "0.0001", "--threads", "1", "--out", out]
    run_dir = out / "12pct" / "unetr" / "repeat0"
    process = subprocess.Popen(bench_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        lines = (run_dir / "log.jsonl").read_text().splitlines() if (run_dir / "log.jsonl").exists() else []
        if len(lines) >= 3:
            process.send_signal(signal.SIGSTOP)  # frozen where a checkpoint is complete, then killed
            if (run_dir / "checkpoint.pt").exists() and (run_dir / "checkpoint.prev.pt").exists():
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    holder_pid = json.loads((run_dir / RUNNING_FILE).read_text())["pid"]
    import torch

    previous_epoch = torch.load(run_dir / "checkpoint.prev.pt", weights_only=True)["epoch"]
    with open(run_dir / "checkpoint.pt", "r+b") as fh:  # as a failed copy or a full disk leaves it
        fh.truncate(1000)
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert f"took the run over from pid {holder_pid} on {socket.gethostname()}" in text and "which is gone" in text
    [aside] = run_dir.glob("checkpoint.pt.unreadable-*")
    assert "checkpoint.pt is unreadable (" in text
    assert f"moved to {aside.name}; resuming from checkpoint.prev.pt at epoch {previous_epoch}" in text
    assert aside.stat().st_size == 1000 and not (run_dir / "checkpoint.prev.pt").exists()
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5]
    status = " ".join(invoke("status", out).output.split())
    assert f"recovered {run_dir} (done): checkpoint.pt was unreadable (moved to {aside.name}); resumed from checkpoint.prev.pt" in status
