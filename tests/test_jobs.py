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
def test_two_jobs_write_what_one_job_writes(tiny_synthetic, tmp_path):
    base = ["run", "--methods", "unetr,vnet", "--data", "12pct", "--data-root", tiny_synthetic, "--profile", "smoke", "--device", "cpu"]
    base += ["--epochs", "1", "--threads", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke(*base, "--out", one).exit_code == 0
    result = invoke(*base, "--out", two, "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert "2 runs in up to 2 jobs at once (1 threads each)" in result.output
    assert rows(one) == rows(two) and len(rows(two)) == 2 * 6 * 13
    for method in ("unetr", "vnet"):
        first, second = (json.loads((f / "12pct" / method / "repeat0" / "config.json").read_text()) for f in (one, two))
        assert first["config_hash"] == second["config_hash"] and second["provenance"]["hardware"]["torch_threads"] == "1"
    assert list((two / ".jobs").glob("*/*_log.out"))  # each job's log
