"""Per-organ Dice and normalized surface Dice in the nnU-Net convention.

Convention (nnU-Net v2, ``evaluate_predictions.py``): an organ absent from both the reference and
the prediction scores NaN and is left out of every mean; absent from the reference but predicted
scores 0. Other codebases differ, which is why published numbers disagree: for an organ absent from
the reference but predicted / absent from both, MONAI's ``DiceMetric(ignore_empty=True)`` gives
NaN / NaN, SAMed's evaluation helper (from TransUNet) 1 / 0, and MA-SAM's 0 / 1.

Normalized surface Dice uses DeepMind's reference implementation (``surface-distance``) at a
tolerance in millimetres, on a box around the organ so that its cost does not grow with the volume.
"""

from __future__ import annotations

import math

import numpy as np
import surface_distance

from bench.data.labels import ORGANS


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


def surface_dice(pred: np.ndarray, ref: np.ndarray, spacing_mm: tuple[float, ...], tolerance_mm: float) -> float:
    """Normalized surface Dice of two boolean masks; NaN if both empty, 0 if exactly one is."""
    pred_any, ref_any = bool(pred.any()), bool(ref.any())
    if not pred_any and not ref_any:
        return math.nan
    if not (pred_any and ref_any):
        return 0.0
    # A margin of background around both masks keeps every surface voxel and its neighbourhood,
    # so the cropped result equals the full-volume one.
    box = _bounding_box(pred | ref, margin=2)
    distances = surface_distance.compute_surface_distances(ref[box], pred[box], spacing_mm)
    return float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))


def score_case(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_mm: float | tuple[float, float, float],
    tolerance_mm: float = 1.0,
) -> dict[str, dict[str, float]]:
    """{organ: {"dice", "nsd", "n_ref", "n_pred"}} for one case, labels in BTCV order."""
    spacing = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    num_classes = len(ORGANS) + 1
    dice = dice_per_organ(prediction, reference, num_classes)
    out: dict[str, dict[str, float]] = {}
    for index, organ in enumerate(ORGANS, start=1):
        pred_mask = prediction == index
        ref_mask = reference == index
        out[organ] = {
            "dice": float(dice[index - 1]),
            "nsd": surface_dice(pred_mask, ref_mask, spacing, tolerance_mm),
            "n_ref": int(ref_mask.sum()),
            "n_pred": int(pred_mask.sum()),
        }
    return out


def nanmean(values) -> float:
    """Mean ignoring NaN; NaN when nothing is left (no warning)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan
