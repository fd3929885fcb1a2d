"""Per-organ Dice, normalized surface Dice and HD95 in the nnU-Net convention.

Convention (nnU-Net v2, ``evaluate_predictions.py``): an organ absent from both the reference and
the prediction scores NaN and is left out of every mean; absent from the reference but predicted
scores 0. Other codebases differ, which is why published numbers disagree: for an organ absent from
the reference but predicted / absent from both, MONAI's ``DiceMetric(ignore_empty=True)`` gives
NaN / NaN, SAMed's evaluation helper (from TransUNet) 1 / 0, and MA-SAM's 0 / 1.

Normalized surface Dice and the 95th-percentile Hausdorff distance (HD95, mm) use DeepMind's
reference implementation (``surface-distance``: ``compute_surface_dice_at_tolerance`` and
``compute_robust_hausdorff``), on a box around the organ so that the cost does not grow with the
volume. Empty masks: absent from both -> NaN for every metric (left out of means, as Dice);
absent from exactly one -> NSD 0 and HD95 = the field of view's corner-to-corner diagonal in mm
(voxel count times spacing along each axis), a penalty in place of surface-distance's infinity,
which would make every mean infinite. It is no distance between the two masks: it grows with the
scan, so one missed organ moves a mean HD95 more than any segmentation error (the report shows
medians and miss counts beside the means).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import surface_distance


def dice_per_organ(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of labels 1..num_classes-1 from one confusion count; NaN where both are empty."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} != reference shape {reference.shape}")
    # Only voxels that are foreground in either map count; at BTCV's size that is a fifth of them.
    either = (prediction != 0) | (reference != 0)
    pred = prediction[either].astype(np.int64)
    ref = reference[either].astype(np.int64)
    pred_count = np.bincount(pred, minlength=num_classes)[1:num_classes]
    ref_count = np.bincount(ref, minlength=num_classes)[1:num_classes]
    intersection = np.bincount(ref[pred == ref], minlength=num_classes)[1:num_classes]
    denominator = pred_count + ref_count
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2.0 * intersection / denominator
    dice[denominator == 0] = np.nan
    return dice


def union_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None, margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The smallest box holding both boxes (either may be None), grown by ``margin`` voxels."""
    boxes = [box for box in (a, b) if box is not None]
    return tuple(
        slice(max(min(box[axis].start for box in boxes) - margin, 0), min(max(box[axis].stop for box in boxes) + margin, n))
        for axis, n in enumerate(shape)
    )


def volume_diagonal_mm(shape: tuple[int, ...], spacing_mm: tuple[float, ...]) -> float:
    """HD95 of a mask against an empty one: the field of view's corner-to-corner diagonal (the
    outer faces of the first and last voxels, so slightly more than any two voxel centres are apart)."""
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing_mm, strict=True))))


@dataclass
class OrganMasks:
    """One organ in one case, as a metric sees it: the predicted and the reference mask (boolean,
    cut to a box around both with two voxels of background, so every surface voxel keeps its
    neighbourhood), the voxel size and shape of the whole volume, and NSD's tolerance. What several
    metrics share (the surface distances) is computed once."""

    prediction: np.ndarray
    reference: np.ndarray
    spacing_mm: tuple[float, float, float]
    full_shape: tuple[int, ...]
    tolerance_mm: float = 1.0

    @functools.cached_property
    def surface_distances(self) -> dict:
        return surface_distance.compute_surface_distances(self.reference, self.prediction, self.spacing_mm)

    @property
    def diagonal_mm(self) -> float:
        return volume_diagonal_mm(self.full_shape, self.spacing_mm)


def organ_dice(masks: OrganMasks) -> float:
    overlap = np.count_nonzero(masks.prediction & masks.reference)
    return 2.0 * overlap / (np.count_nonzero(masks.prediction) + np.count_nonzero(masks.reference))


def organ_nsd(masks: OrganMasks) -> float:
    return float(surface_distance.compute_surface_dice_at_tolerance(masks.surface_distances, masks.tolerance_mm))


def organ_hd95(masks: OrganMasks) -> float:
    return float(surface_distance.compute_robust_hausdorff(masks.surface_distances, 95))


def diagonal_penalty(masks: OrganMasks) -> float:
    """HD95 of a mask against an empty one (see the module's text)."""
    return masks.diagonal_mm


def nanmean(values) -> float:
    """Mean ignoring NaN; NaN when nothing is left (no warning)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan
