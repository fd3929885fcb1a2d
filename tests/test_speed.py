from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bench.cli.__main__ import app
from bench.costs.speed import loader_crops_per_second


@pytest.mark.slow
def test_bench_speed_times_the_trainers_step_and_evaluations_window(monkeypatch):
    import monai.inferers

    import bench.pipelines.training
    from bench.plan.profiles import PROFILES

    losses, windows = [], []
    real_loss, real_window = bench.pipelines.training.supervised_loss, monai.inferers.sliding_window_inference

    def counted_loss(loss_fn, logits, label):
        losses.append(tuple(label.shape))
        return real_loss(loss_fn, logits, label)

    def recorded_window(*args, **kwargs):
        windows.append(kwargs)
        return real_window(*args, **kwargs)

    monkeypatch.setattr(bench.pipelines.training, "supervised_loss", counted_loss)
    monkeypatch.setattr(monai.inferers, "sliding_window_inference", recorded_window)
    result = CliRunner().invoke(app, ["speed", "--methods", "nnunet", "--steps", "1", "--profile", "smoke", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["device"] == "cpu" and report["input"] == 32 and report["versions"]["torch"]
    (row,) = report["methods"]
    assert row["name"] == "nnunet" and row["crops_per_step"] == 2
    assert row["train_step_s"] > 0 and row["sliding_window_s"] > 0 and row["peak_memory_mib"] > 0
    # 2 warm-up + 1 timed steps of the trainer's own step, on the profile's batch of crops
    assert losses == [(2, 1, 32, 32, 32)] * 3
    smoke = PROFILES["smoke"]
    assert [(w["overlap"], w["sw_batch_size"], w["roi_size"]) for w in windows] == [(smoke.sw_overlap, smoke.sw_batch_size, (32, 32, 32))]
    assert report["loader_crops_per_s"] > 0


def test_loader_throughput_counts_crops():
    assert loader_crops_per_second(16, crops_per_case=2, seconds=0.3) > 1


def test_speed_refuses_a_crop_the_method_cannot_take():
    result = CliRunner().invoke(app, ["speed", "--methods", "swinunetr", "--input", "48", "--profile", "smoke", "--device", "cpu"])
    assert result.exit_code == 2 and "multiple of 32" in result.output


def test_paper_grid_hours_by_hand():
    """The paper profile over the committed splits: 1 draw of 24 cases and 5 draws each of 6 and 3,
    1000 epochs: 1000 x (24 + 5 x 6 + 5 x 3) = 69,000 steps; validation every 50 epochs (20) plus the
    final evaluation over 6 test cases in 11 runs: 1,386 window passes."""
    import math

    from bench.costs.speed import ASSUMED_CASE_MM, paper_grid_hours
    from bench.plan.profiles import PROFILES
    from splits import load_protocol

    profile = PROFILES["paper"]
    case_voxels = math.prod(mm / profile.preprocess.spacing_mm for mm in ASSUMED_CASE_MM)
    row = {"train_step_s": 0.5, "sliding_window_s": 2.0, "sliding_window_volume": [int(case_voxels), 1, 1]}
    grid = paper_grid_hours(row, profile, load_protocol(), scoring_s_per_case=10.0)
    assert (grid["runs"], grid["train_steps"], grid["window_passes"]) == (11, 69_000, 1_386)
    expected_s = 69_000 * 0.5 + 1_386 * 2.0 * case_voxels / int(case_voxels) + 11 * 6 * 10.0
    assert grid["hours"] == pytest.approx(expected_s / 3600, abs=0.01)
