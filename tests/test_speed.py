from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.speed import loader_crops_per_second


def test_bench_speed_json_reports_times_memory_and_provenance():
    result = CliRunner().invoke(app, ["speed", "--methods", "nnunet", "--steps", "1", "--profile", "smoke", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["device"] == "cpu" and report["input"] == 32 and report["versions"]["torch"]
    (row,) = report["methods"]
    assert row["name"] == "nnunet" and row["crops_per_step"] == 2
    assert row["train_step_s"] > 0 and row["sliding_window_s"] > 0 and row["peak_memory_mib"] > 0
    assert row["train_crops_per_s"] == pytest.approx(2 / row["train_step_s"], rel=0.01, abs=0.01)
    assert report["loader_crops_per_s"] > 0


def test_loader_throughput_counts_crops():
    assert loader_crops_per_second(16, crops_per_case=2, seconds=0.3) > 1


def test_speed_refuses_a_crop_the_method_cannot_take():
    result = CliRunner().invoke(app, ["speed", "--methods", "swinunetr", "--input", "48", "--profile", "smoke", "--device", "cpu"])
    assert result.exit_code == 2 and "multiple of 32" in result.output
