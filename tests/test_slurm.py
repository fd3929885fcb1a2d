"""--executor slurm against a real SLURM cluster (CI starts a single-node one with .ci/slurm-up)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
import time

import pytest
from typer.testing import CliRunner

from bench.cli.__main__ import app
from bench.runs.claim import RUNNING_FILE


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and ("idle" in done.stdout or "mix" in done.stdout)


@pytest.fixture
def slurm_cluster():
    if not _cluster_up():
        if os.environ.get("BENCH_REQUIRE_SLURM") == "1":
            pytest.fail("BENCH_REQUIRE_SLURM=1 but no SLURM node is up (sinfo)")
        pytest.skip("no SLURM cluster here (.ci/slurm-up starts a single-node one)")


def warn_when_training(marker, timeout_s: float = 120.0) -> None:
    """Send the job named in a run's running.json SLURM's time-limit warning (USR2) once it trains."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job = json.loads(marker.read_text()).get("slurm_job")
        except (OSError, ValueError):
            job = None
        if job:
            time.sleep(2.0)  # into the training loop, past start-up
            subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, timeout=30)
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_a_small_grid_through_slurm_lands_in_the_runs_folder_and_the_report(slurm_cluster, tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--executor", "slurm", "--methods", "unetr,nnunet", "--data", "12pct", "--repeats", "0"]
    args += ["--data-root", str(tiny_synthetic), "--out", str(out), "--profile", "smoke", "--epochs", "1", "--slurm-mem", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "submitted 2 SLURM jobs" in result.output
    for method in ("unetr", "nnunet"):
        assert (out / "12pct" / method / "repeat0" / "summary.json").exists()
        # Each job's threads come from its allocation (one CPU here), not from the submitting host.
        config = json.loads((out / "12pct" / method / "repeat0" / "config.json").read_text())
        assert config["provenance"]["hardware"]["torch_threads"] == "1", config["provenance"]["hardware"]
    assert list((out / ".slurm").glob("*/*_log.out"))  # submitit's per-job logs
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2 * 6 * 13
    assert 'data-method="nnunet"' in (out / "report" / "report.html").read_text()
    again = CliRunner().invoke(app, args)  # finished runs are not submitted again
    assert again.exit_code == 0 and "finished earlier, skipped" in again.output and "submitted" not in again.output
    status = CliRunner().invoke(app, ["status", str(out)])
    assert "2 done, 0 running, 0 failed, 0 incomplete, 8 missing of 10 runs" in status.output

    # A job that cannot finish in its time limit (and may not be requeued) fails; the grid reports it.
    # SLURM's warning before the limit (USR2) is sent as soon as the job trains, so the test need
    # not sit out the minute; had it failed to arrive, the limit itself would end the job alike.
    endless = ["run", "--executor", "slurm", "--methods", "unetr", "--data", "12pct", "--repeats", "1", "--epochs", "100000"]
    endless += ["--data-root", str(tiny_synthetic), "--out", str(out), "--profile", "smoke", "--slurm-mem", "2"]
    warner = threading.Thread(target=warn_when_training, args=(out / "12pct" / "unetr" / "repeat1" / RUNNING_FILE,), daemon=True)
    warner.start()
    timed_out = CliRunner().invoke(app, [*endless, "--slurm-time", "1", "--slurm-requeues", "0"])
    assert timed_out.exit_code == 1, timed_out.output
    assert "1 of 1 runs failed" in timed_out.output and "unetr 12pct repeat 1" in timed_out.output
    status = CliRunner().invoke(app, ["status", str(out)])
    assert "2 done, 0 running, 1 failed, 0 incomplete, 7 missing of 10 runs" in status.output
    # in the job's own words (submitit: "timed-out too many times") or, if it was killed first, SLURM's
    assert "timed-out" in status.output or "DUE TO TIME LIMIT" in status.output, status.output
    html = (out / "report" / "report.html").read_text()
    assert "failed: unetr repeat 1: UncompletedJobError" in html


def test_a_job_that_leaves_the_queue_without_a_result_is_a_failure_not_a_hang(monkeypatch, tmp_path):
    import bench.runs.claim
    from bench.executors.slurm import log_hint, wait_for

    class VanishedJob:  # killed before it wrote a result, on a cluster without accounting: never "done"
        job_id = "41_0"
        paths = type("Paths", (), {"stderr": tmp_path / "41_0_0_log.err", "stdout": tmp_path / "41_0_0_log.out"})()

        def done(self):
            return False

    monkeypatch.setattr(bench.runs.claim, "slurm_job_state", lambda job_id: None)
    with pytest.raises(RuntimeError, match="SLURM job 41_0 left the queue without a result"):
        wait_for(VanishedJob(), poll_s=0.01, grace_s=0.05)
    VanishedJob.paths.stderr.write_text("training...\nslurmstepd: error: *** JOB 41 ON vm CANCELLED AT 09:22:04 DUE TO TIME LIMIT ***\n")
    assert log_hint(VanishedJob()) == "slurmstepd: error: *** JOB 41 ON vm CANCELLED AT 09:22:04 DUE TO TIME LIMIT ***"
