"""Threads sized to the cores a run is given, and a busy machine said before the first run."""

from __future__ import annotations

import os

import pytest
import torch

from bench.device import busy_warning, cores_given
from tests.conftest import invoke


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def load_average(monkeypatch, value: float) -> None:
    """Other processes keep ``value`` cores busy, as the harness measures it."""
    import bench.device

    monkeypatch.setattr(bench.device, "cores_in_use", lambda seconds=0.15: value)


def test_a_spinning_process_is_measured_as_one_busy_core():
    import subprocess
    import sys

    from bench.device import cores_in_use

    core = min(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        import time

        time.sleep(0.5)  # past its start-up
        assert 0.7 <= cores_in_use() <= 1.0 + (len(os.sched_getaffinity(0)) - 1) * 0.5
    finally:
        spinner.kill()
        spinner.wait()


def test_the_cores_given_are_the_affinity_not_the_machine():
    everything = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(everything)})  # as taskset or a SLURM job would
        assert cores_given() == 1
    finally:
        os.sched_setaffinity(0, everything)
    assert cores_given() == len(everything)


def test_inside_a_slurm_job_the_cores_given_are_its_allocation(monkeypatch, tiny_synthetic, tmp_path, restore_threads):
    """SLURM need not bind a job's affinity to its CPUs: its allocation caps the cores given, and a
    grid decided there takes its threads and loader workers from it, not from a request's."""
    from rich.console import Console

    from bench.plan.grid import decide
    from bench.plan.runs import RunRequest

    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1")
    assert cores_given() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(len(os.sched_getaffinity(0)) + 8))  # never more than the affinity
    assert cores_given() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    load_average(monkeypatch, 0.0)
    request = RunRequest(["unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs")
    decided = decide(request, Console(quiet=True))
    assert decided.threads == torch.get_num_threads() == 1 and decided.profile.num_workers <= 1
    assert decided.request.threads is None  # what a job is handed: the user's ask, not this host's count


def test_a_busy_machine_is_one_line_with_the_threads_that_fit(monkeypatch):
    load_average(monkeypatch, 1.5)
    line = busy_warning(2, 2)
    assert line.startswith("other processes keep 1.5 of the 2 cores given busy") and line.endswith("--threads 1 would fit")
    assert "\n" not in line
    assert busy_warning(2, 1) is None  # one thread fits beside the other process
    load_average(monkeypatch, 0.3)
    assert busy_warning(2, 2) is None


def test_a_run_uses_the_threads_asked_and_records_them(tiny_synthetic, tmp_path, monkeypatch, restore_threads):
    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import prepare_grid
    from bench.plan.runs import RunRequest

    load_average(monkeypatch, 0.0)
    four_workers = {"num_workers": 4}
    request = RunRequest(["unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs", threads=1)
    request.profile_overrides = four_workers
    grid = prepare_grid(request, Console(quiet=True), harness=HARNESS)
    assert torch.get_num_threads() == 1 and grid.profile.num_workers == 1  # the loader's workers sized to the share too
    assert grid.provenance.hardware["torch_threads"] == "1" and grid.provenance.hardware["cores_given"] == str(cores_given())
    grid = prepare_grid(
        RunRequest(["unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs"), Console(quiet=True), harness=HARNESS
    )
    assert grid.provenance.hardware["torch_threads"] == str(cores_given())  # the default: every core given


def test_bad_threads_and_the_doctors_check(tiny_synthetic, tmp_path, monkeypatch, restore_threads):
    load_average(monkeypatch, 0.0 + cores_given())  # every core busy
    result = invoke("run", "--methods", "unetr", "--data", "12pct", "--data-root", tiny_synthetic, "--out", tmp_path, "--threads", "0")
    assert result.exit_code == 2 and result.output.strip() == "error: --threads must be at least 1, got 0"
    from bench.costs.doctor import cores_check

    check = cores_check()
    assert check.status == "warn" and f"keep {cores_given():.1f} of the {cores_given()} cores given busy" in check.detail


@pytest.mark.slow
def test_a_busy_machine_is_said_before_the_first_run(tiny_synthetic, tmp_path, monkeypatch, restore_threads):
    load_average(monkeypatch, 1.0 + cores_given())  # more than every core busy
    args = ["run", "--methods", "unetr", "--data", "12pct", "--data-root", tiny_synthetic, "--out", tmp_path]
    result = invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1")
    assert result.exit_code == 0, result.output
    warning = result.output.index("warning: other processes keep")
    assert warning < result.output.index("unetr 12pct #0") and "--threads 1 would fit" in result.output
