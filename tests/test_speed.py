from __future__ import annotations

import json

from typer.testing import CliRunner

from bench.cli import app
from bench.speed import loader_crops_per_second


def test_bench_speed_times_the_trainers_step_and_evaluations_window(monkeypatch):
    import monai.inferers

    import bench.train
    from bench.config import PROFILES

    losses, windows = [], []
    real_loss, real_window = bench.train.supervised_loss, monai.inferers.sliding_window_inference

    def counted_loss(loss_fn, logits, label):
        losses.append(tuple(label.shape))
        return real_loss(loss_fn, logits, label)

    def recorded_window(*args, **kwargs):
        windows.append(kwargs)
        return real_window(*args, **kwargs)

    monkeypatch.setattr(bench.train, "supervised_loss", counted_loss)
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
