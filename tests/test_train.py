from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.settings import PreprocessedCase
from bench.evaluation.evaluate import sliding_windows, validation_dice
from bench.pipelines.training import cosine_to_zero, train
from bench.plan.profiles import PROFILES


def validation_on(cases, profile):
    return validation_dice(cases, lambda model: sliding_windows(model, profile.roi, profile.sw_overlap, profile.sw_batch_size, "cpu"))


def toy_cases(n=3, seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        label = np.zeros((1, 20, 18, 16), np.uint8)
        label[0, 4:12, 5:12, 3:10] = 6
        label[0, 13:17, 4:8, 8:14] = 1
        image = (0.3 + 0.4 * (label > 0) + 0.05 * rng.standard_normal(label.shape)).astype(np.float32)
        cases.append(PreprocessedCase(f"{i:04d}", image, label, 8.0, np.diag([8.0, 8.0, 8.0, 1.0])))
    return cases


def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 14, 1))


PROFILE = dataclasses.replace(PROFILES["smoke"], roi=16, epochs=3, val_every=2, min_iterations_per_epoch=2, crops_per_case=2)


def test_resumed_training_equals_uninterrupted(tmp_path):
    cases = toy_cases()
    # 9 steps, 8 of them warming up: the resumed run picks the rate up half-way through its rise.
    profile = dataclasses.replace(PROFILE, warmup_fraction=0.9)
    straight = train(toy_model(), cases, validation_on(cases[:1], profile), profile, "cpu", tmp_path / "a", "h", seed=7)
    # Interrupt the same run inside its third epoch (an exception, as a crash would); the checkpoint
    # of epoch 2 (a validation epoch) is what the rerun resumes from.
    (tmp_path / "c").mkdir()

    class Stop(Exception):
        pass

    def stop_after_two(epoch, step, loss, lr, seconds):
        if epoch == 2 and step == 1:
            raise Stop

    with pytest.raises(Stop):
        train(toy_model(), cases, validation_on(cases[:1], profile), profile, "cpu", tmp_path / "c", "h", seed=7, on_step=stop_after_two)
    resumed = train(toy_model(), cases, validation_on(cases[:1], profile), profile, "cpu", tmp_path / "c", "h", seed=7)
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    lines = [json.loads(line) for line in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    # every second epoch; the last (3) is not validated: the evaluation after training scores it
    assert ["val_dice" in line for line in lines] == [False, True, False]


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    cases = toy_cases(2)
    train(toy_model(), cases, None, dataclasses.replace(PROFILE, epochs=1), "cpu", tmp_path, "first", seed=1)
    with pytest.raises(RuntimeError, match="different configuration"):
        train(toy_model(), cases, None, dataclasses.replace(PROFILE, epochs=2), "cpu", tmp_path, "second", seed=1)


def test_training_reduces_the_loss(tmp_path):
    cases = toy_cases()
    train(toy_model(), cases, None, dataclasses.replace(PROFILE, epochs=8, lr=1e-2), "cpu", tmp_path, "h", seed=3)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.8 * losses[0]


def test_every_step_is_reported_with_the_time_it_took(tmp_path):
    """What a run's recorded steps and median step time come from: one report per optimisation step,
    its seconds within the epoch's (log.jsonl), which also holds loading and the checkpoint."""
    from bench.pipelines.training import steps_per_epoch

    steps = []
    cases = toy_cases()
    train(toy_model(), cases, None, PROFILE, "cpu", tmp_path, "h", seed=3, on_step=lambda *a: steps.append(a))
    per_epoch = steps_per_epoch(len(cases), PROFILE)
    assert [(e, k) for e, k, *_ in steps] == [(e, k) for e in range(PROFILE.epochs) for k in range(1, per_epoch + 1)]
    epochs = [json.loads(line)["seconds"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    for epoch, seconds in enumerate(epochs):
        took = [a[4] for a in steps if a[0] == epoch]
        assert all(t > 0 for t in took) and sum(took) <= seconds + 1e-3


def test_cosine_schedule_runs_from_one_to_zero():
    f = cosine_to_zero(100)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0) and f(150) == pytest.approx(0.0)


def test_warmup_rises_linearly_into_the_cosine():
    f = cosine_to_zero(100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    assert f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.09))) and f(50) == pytest.approx(0.5)


def test_training_warms_up_over_the_profiles_share_of_steps(tmp_path):
    # 3 cases -> 3 steps an epoch, 12 in all, the first 6 warming up: after epoch 1 the scheduler
    # stands at step 3, i.e. 4/6 of the way up, times the cosine at 3/12.
    profile = dataclasses.replace(PROFILE, epochs=4, lr=1e-2, warmup_fraction=0.5)
    train(toy_model(), toy_cases(), None, profile, "cpu", tmp_path, "h", seed=3)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(1e-2 * 4 / 6 * 0.5 * (1 + math.cos(math.pi * 3 / 12)))
    assert lrs[1] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 6 / 12)))


def partly_frozen_model():
    model = toy_model()
    model[0].requires_grad_(False)  # a frozen "backbone"
    return model


def test_checkpoints_leave_frozen_weights_out_and_resume(tmp_path):
    cases = toy_cases()
    straight = train(partly_frozen_model(), cases, None, PROFILE, "cpu", tmp_path / "a", "h", seed=5)

    class Stop(Exception):
        pass

    def stop(epoch, step, loss, lr, seconds):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(partly_frozen_model(), cases, None, PROFILE, "cpu", tmp_path / "b", "h", seed=5, on_step=stop)
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert set(saved) == {"2.weight", "2.bias"}
    resumed = train(partly_frozen_model(), cases, None, PROFILE, "cpu", tmp_path / "b", "h", seed=5)
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tmp_path):
    cases = toy_cases(2)
    train(toy_model(), cases, None, dataclasses.replace(PROFILE, epochs=1), "cpu", tmp_path, "same", seed=1)
    other = torch.nn.Conv3d(1, 14, 3, padding=1)  # another network under the same configuration hash
    with pytest.raises(RuntimeError, match="does not match the model"):
        train(other, cases, [], dataclasses.replace(PROFILE, epochs=2), "cpu", tmp_path, "same", seed=1)


class Stop(Exception):
    pass


def stop_in_epoch(n):
    def on_step(epoch, step, loss, lr, seconds):
        if epoch == n - 1:
            raise Stop

    return on_step


@pytest.mark.parametrize("damage", ["truncated", "zero-byte"])
def test_a_damaged_checkpoint_is_moved_aside_and_training_resumes_from_the_previous(tmp_path, damage):
    cases = toy_cases()
    profile = dataclasses.replace(PROFILE, epochs=4, checkpoint_minutes=0)  # a checkpoint every epoch
    straight = train(toy_model(), cases, None, profile, "cpu", tmp_path / "a", "h", seed=7)
    assert (tmp_path / "a" / "checkpoint.prev.pt").exists()
    straight.save(tmp_path / "a" / "checkpoint.pt", "h", finished=True)  # as the run's end does: nothing resumes any more
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint.pt", "log.jsonl"]
    run = tmp_path / "b"
    with pytest.raises(Stop):
        train(toy_model(), cases, None, profile, "cpu", run, "h", seed=7, on_step=stop_in_epoch(3))
    latest, previous = run / "checkpoint.pt", run / "checkpoint.prev.pt"
    assert torch.load(latest, weights_only=True)["epoch"] == 2 and torch.load(previous, weights_only=True)["epoch"] == 1
    with open(latest, "r+b") as fh:  # as a kill mid-copy or a full disk leaves it
        fh.truncate(1000 if damage == "truncated" else 0)
    said = []
    resumed = train(toy_model(), cases, None, profile, "cpu", run, "h", seed=7, notify=said.append)
    [aside] = run.glob("checkpoint.pt.unreadable-*")
    assert aside.stat().st_size == (1000 if damage == "truncated" else 0)  # kept, not deleted
    assert len(said) == 1 and said[0].startswith(f"{run}: checkpoint.pt is unreadable (")
    assert said[0].endswith(f"moved to {aside.name}; resuming from checkpoint.prev.pt at epoch 1")
    epochs = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    for key, value in straight.model.state_dict().items():  # the recovered run is the uninterrupted one
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    [record] = json.loads((run / "recovered.json").read_text())
    assert record["resumed_from"] == "checkpoint.prev.pt" and record["epoch"] == 1
    assert record["unreadable"][0]["file"] == "checkpoint.pt" and record["unreadable"][0]["moved_to"] == aside.name


def test_with_no_readable_checkpoint_left_training_starts_again(tmp_path):
    cases = toy_cases()
    profile = dataclasses.replace(PROFILE, epochs=3, checkpoint_minutes=0)
    straight = train(toy_model(), cases, None, profile, "cpu", tmp_path / "a", "h", seed=7)
    run = tmp_path / "b"
    with pytest.raises(Stop):
        train(toy_model(), cases, None, profile, "cpu", run, "h", seed=7, on_step=stop_in_epoch(3))
    (run / "checkpoint.pt").write_bytes(b"")
    (run / "checkpoint.prev.pt").write_bytes(b"not a zip file at all")
    said = []
    again = train(toy_model(), cases, None, profile, "cpu", run, "h", seed=7, notify=said.append)
    assert len(list(run.glob("*.unreadable-*"))) == 2 and said[0].endswith("; training from scratch")
    assert "checkpoint.prev.pt is unreadable" in said[0] and "checkpoint.pt is unreadable" in said[0]
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value, rtol=0, atol=0)
