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
absent from exactly one -> NSD 0 and HD95 = the diagonal of the whole volume in mm, the largest
distance two voxels of it can have (surface-distance's infinity would make every mean infinite).
"""

from __future__ import annotations

import math

import numpy as np
import surface_distance

from bench.data.labels import ORGANS

# Recorded in every summary.json, so a reader knows which empty-organ rule its numbers follow.
METRIC_CONVENTION = (
    "nnU-Net: organ absent in reference and prediction -> NaN for every metric (skipped in means); "
    "absent in one of them -> Dice 0, NSD 0, HD95 = the volume's diagonal in mm"
)


def dice_per_organ(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of labels 1..num_classes-1 from one confusion count; NaN where both are empty."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} != reference shape {reference.shape}")
    pred = prediction.astype(np.int64).ravel()
    ref = reference.astype(np.int64).ravel()
    pred_count = np.bincount(pred, minlength=num_classes)[1:num_classes]
    ref_count = np.bincount(ref, minlength=num_classes)[1:num_classes]
    agree = pred == ref
    intersection = np.bincount(ref[agree], minlength=num_classes)[1:num_classes]
    denominator = pred_count + ref_count
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2.0 * intersection / denominator
    dice[denominator == 0] = np.nan
    return dice


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    slices = []
    for axis in range(mask.ndim):
        any_other = np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis))
        idx = np.flatnonzero(any_other)
        slices.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + margin + 1, mask.shape[axis])))
    return tuple(slices)


def volume_diagonal_mm(shape: tuple[int, ...], spacing_mm: tuple[float, ...]) -> float:
    """HD95 of a mask against an empty one: the longest distance inside the volume."""
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing_mm, strict=True))))


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing_mm: tuple[float, ...], tolerance_mm: float) -> tuple[float, float]:
    """(normalized surface Dice, HD95 in mm) of two boolean masks, with the empty-mask rules above."""
    pred_any, ref_any = bool(pred.any()), bool(ref.any())
    if not pred_any and not ref_any:
        return math.nan, math.nan
    if not (pred_any and ref_any):
        return 0.0, volume_diagonal_mm(ref.shape, spacing_mm)
    # A margin of background around both masks keeps every surface voxel and its neighbourhood,
    # so the cropped result equals the full-volume one.
    box = _bounding_box(pred | ref, margin=2)
    distances = surface_distance.compute_surface_distances(ref[box], pred[box], spacing_mm)
    nsd = float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))
    return nsd, float(surface_distance.compute_robust_hausdorff(distances, 95))


def score_case(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_mm: float | tuple[float, float, float],
    tolerance_mm: float = 1.0,
) -> dict[str, dict[str, float]]:
    """{organ: {"dice", "nsd", "hd95", "n_ref", "n_pred"}} for one case, labels in BTCV order;
    ``spacing_mm`` is the voxel size of both arrays (one number if isotropic), NSD's tolerance in mm."""
    spacing = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    num_classes = len(ORGANS) + 1
    dice = dice_per_organ(prediction, reference, num_classes)
    out: dict[str, dict[str, float]] = {}
    for index, organ in enumerate(ORGANS, start=1):
        pred_mask = prediction == index
        ref_mask = reference == index
        nsd, hd95 = surface_metrics(pred_mask, ref_mask, spacing, tolerance_mm)
        out[organ] = {
            "dice": float(dice[index - 1]),
            "nsd": nsd,
            "hd95": hd95,
            "n_ref": int(ref_mask.sum()),
            "n_pred": int(pred_mask.sum()),
        }
    return out


def nanmean(values) -> float:
    """Mean ignoring NaN; NaN when nothing is left (no warning)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan
