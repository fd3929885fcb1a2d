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


def test_of_four_processes_taking_over_one_stale_claim_exactly_one_wins(tmp_path):
    write_json(tmp_path / RUNNING_FILE, holder(a_dead_pid()))
    context = multiprocessing.get_context("fork")
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
