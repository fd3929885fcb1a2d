from __future__ import annotations

import math

import numpy as np
import pytest
import surface_distance
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from bench.data.labels import ORGANS
from bench.evaluation.metrics import OrganMasks, dice_per_organ
from bench.evaluation.scores import get_metric, score_case
from bench.runs.files import CaseScores
from bench.runs.results import organ_means


def test_dice_matches_monai_on_random_label_maps():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 14, size=(20, 18, 16))
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, 14, size=ref.shape))
    ours = dice_per_organ(pred, ref, 14)
    to_onehot = lambda a: one_hot(torch.as_tensor(a)[None, None], num_classes=14)  # noqa: E731
    theirs = compute_dice(to_onehot(pred), to_onehot(ref), include_background=False)[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_nnunet_convention_for_absent_organs():
    ref = np.zeros((8, 8, 8), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:4, 1:4, 1:4] = 1  # spleen in reference only
    pred[5:7, 5:7, 5:7] = 2  # right kidney predicted, absent from reference
    dice = dice_per_organ(pred, ref, 14)
    assert dice[0] == 0.0  # reference only -> 0
    assert dice[1] == 0.0  # prediction only -> 0
    assert np.isnan(dice[2])  # absent from both -> NaN


def test_nan_is_left_out_of_means():
    def case(dice_liver, dice_spleen):
        metrics = {o: {"dice": math.nan, "nsd": math.nan, "hd95": math.nan} for o in ORGANS}
        metrics["liver"] = {"dice": dice_liver, "nsd": dice_liver, "hd95": 1.0}
        metrics["spleen"] = {"dice": dice_spleen, "nsd": dice_spleen, "hd95": 1.0}
        return CaseScores("x", metrics)

    mean, foreground = organ_means([case(0.8, math.nan), case(0.6, 0.5)])
    assert mean["liver"]["dice"] == pytest.approx(0.7)
    assert mean["spleen"]["dice"] == pytest.approx(0.5)
    assert foreground["dice"] == pytest.approx(0.6)


def test_score_case_on_organ_boxes_equals_the_full_volume():
    """score_case measures each organ in a box around it; the figures must be those of the whole
    volume: surface distances on the full masks, and the whole volume's diagonal as HD95 for an
    organ that only one map has."""
    rng = np.random.default_rng(1)
    ref = np.zeros((60, 50, 40), np.uint8)
    ref[10:30, 12:33, 8:20] = 6  # liver
    ref[40:52, 5:15, 25:36] = 1  # spleen
    ref[2:6, 40:46, 2:5] = 4  # gallbladder, which the prediction misses
    pred = np.roll(ref, 2, axis=0) * (rng.random(ref.shape) > 0.05)
    pred[pred == 4] = 0
    pred[55:58, 44:48, 30:34] = 12  # a right adrenal gland the reference does not have
    spacing = (0.8, 0.8, 2.5)
    scores = score_case(pred, ref, spacing)
    for organ in ("liver", "spleen"):
        label = ORGANS.index(organ) + 1
        distances = surface_distance.compute_surface_distances(ref == label, pred == label, spacing)
        assert scores[organ]["nsd"] == pytest.approx(surface_distance.compute_surface_dice_at_tolerance(distances, 1.0), abs=1e-12)
        assert scores[organ]["hd95"] == pytest.approx(surface_distance.compute_robust_hausdorff(distances, 95), abs=1e-9)
        assert scores[organ]["n_ref"] == (ref == label).sum() and scores[organ]["n_pred"] == (pred == label).sum()
        assert 0.0 < scores[organ]["nsd"] < 1.0
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(ref.shape, spacing, strict=True)))
    for organ in ("gallbladder", "right adrenal gland"):
        assert scores[organ]["nsd"] == 0.0 and scores[organ]["hd95"] == pytest.approx(diagonal) and scores[organ]["dice"] == 0.0


def surface_metrics(pred, ref, spacing, tolerance_mm):
    """(NSD, HD95) of two masks through the registered metrics and their empty-mask rules."""
    masks = OrganMasks(pred, ref, spacing, pred.shape, tolerance_mm)
    return get_metric("nsd").score(masks), get_metric("hd95").score(masks)


def test_a_shift_along_the_coarse_axis_costs_its_spacing():
    """A slab moved by one voxel along an axis of 2.5 mm: every surface point of its two big faces is
    2.5 mm from the other slab's face, so HD95 is 2.5 mm; NSD at 1 mm counts only the side faces."""
    ref = np.zeros((40, 40, 12), bool)
    ref[5:35, 5:35, 4:6] = True
    pred = np.roll(ref, 1, axis=2)
    nsd, hd95 = surface_metrics(pred, ref, (1.0, 1.0, 2.5), 1.0)
    assert hd95 == pytest.approx(2.5)
    assert nsd < 0.5
    assert surface_metrics(pred, ref, (1.0, 1.0, 2.5), 2.5)[0] == pytest.approx(1.0)


def test_empty_mask_rules():
    empty = np.zeros((5, 6, 7), bool)
    some = empty.copy()
    some[1:3, 1:3, 1:3] = True
    spacing = (1.0, 2.0, 3.0)
    both_empty = surface_metrics(empty, empty, spacing, 1.0)
    assert math.isnan(both_empty[0]) and math.isnan(both_empty[1])
    diagonal = math.sqrt(5**2 + 12**2 + 21**2)
    assert surface_metrics(some, empty, spacing, 1.0) == (0.0, pytest.approx(diagonal))
    assert surface_metrics(empty, some, spacing, 1.0) == (0.0, pytest.approx(diagonal))


def test_score_case_gives_every_organ():
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:6, 2:6, 2:6] = 6
    scores = score_case(ref, ref, 1.0)
    assert set(scores) == set(ORGANS)
    liver = scores["liver"]
    assert liver["dice"] == 1.0 and liver["nsd"] == 1.0 and liver["hd95"] == 0.0 and liver["n_ref"] == 64
    assert all(math.isnan(scores["spleen"][metric]) for metric in ("dice", "nsd", "hd95"))


def test_predict_case_pads_small_volumes_and_restores_the_mode():
    """A volume smaller than the window is padded for the network and the label map keeps its shape;
    the model comes back in the mode it was in."""
    import torch

    from bench.evaluation.evaluate import predict_case

    class Echo(torch.nn.Module):
        """Class 1 where the intensity is above 0.5, class 0 elsewhere; records the window sizes it sees."""

        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append((tuple(x.shape[2:]), self.training))
            return torch.cat([0.5 - x, x - 0.5], dim=1)

    model = Echo().train()
    image = np.zeros((1, 10, 12, 7), np.float32)
    image[0, 2:5, 3:9, 1:4] = 1.0
    prediction = predict_case(model, image, roi=16, overlap=0.5, sw_batch_size=2, device="cpu")
    assert prediction.shape == (10, 12, 7) and prediction.dtype == np.uint8
    np.testing.assert_array_equal(prediction, (image[0] > 0.5).astype(np.uint8))
    assert model.seen and all(shape == (16, 16, 16) and not training for shape, training in model.seen)
    assert model.training
