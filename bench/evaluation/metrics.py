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

import math

import numpy as np
import surface_distance

from bench.data.labels import BTCV_LABELS, LabelSet

# Recorded in every summary.json, so a reader knows which empty-organ rule its numbers follow.
METRIC_CONVENTION = (
    "nnU-Net: organ absent in reference and prediction -> NaN for every metric (skipped in means); "
    "absent in one of them -> Dice 0, NSD 0, HD95 = the volume's diagonal in mm"
)


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


def _union_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None, margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
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


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing_mm: tuple[float, ...], tolerance_mm: float, full_shape: tuple[int, ...] | None = None
) -> tuple[float, float]:
    """(normalized surface Dice, HD95 in mm) of two boolean masks, with the empty-mask rules above.

    The masks may be a box cut from larger volumes, ``full_shape`` (default: their own shape): its
    diagonal is the HD95 of a mask against an empty one. The box must leave a margin of background
    around both masks (two voxels), so that every surface voxel keeps its neighbourhood and the
    result equals the full volume's.
    """
    full_shape = pred.shape if full_shape is None else full_shape
    pred_any, ref_any = bool(pred.any()), bool(ref.any())
    if not pred_any and not ref_any:
        return math.nan, math.nan
    if not (pred_any and ref_any):
        return 0.0, volume_diagonal_mm(full_shape, spacing_mm)
    distances = surface_distance.compute_surface_distances(ref, pred, spacing_mm)
    nsd = float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))
    return nsd, float(surface_distance.compute_robust_hausdorff(distances, 95))


def score_case(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_mm: float | tuple[float, float, float],
    tolerance_mm: float = 1.0,
    labels: LabelSet = BTCV_LABELS,
) -> dict[str, dict[str, float]]:
    """{organ: {"dice", "nsd", "hd95", "n_ref", "n_pred"}} for one case, organs of ``labels`` in
    value order; ``spacing_mm`` is the voxel size of both arrays (one number if isotropic), NSD's
    tolerance in mm."""
    from scipy.ndimage import find_objects

    spacing = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    num_classes = labels.num_classes
    dice = dice_per_organ(prediction, reference, num_classes)
    # Each organ's box in both maps from one pass over each: comparing whole volumes label by label
    # cost more than the surface distances themselves.
    pred_boxes = find_objects(prediction, max_label=num_classes - 1)
    ref_boxes = find_objects(reference, max_label=num_classes - 1)
    out: dict[str, dict[str, float]] = {}
    for index, organ in enumerate(labels.organs, start=1):
        pred_box, ref_box = pred_boxes[index - 1], ref_boxes[index - 1]
        if pred_box is None and ref_box is None:
            nsd, hd95, n_pred, n_ref = math.nan, math.nan, 0, 0
        else:
            box = _union_box(pred_box, ref_box, margin=2, shape=prediction.shape)
            pred_mask, ref_mask = prediction[box] == index, reference[box] == index
            nsd, hd95 = surface_metrics(pred_mask, ref_mask, spacing, tolerance_mm, full_shape=prediction.shape)
            n_pred, n_ref = int(pred_mask.sum()), int(ref_mask.sum())
        out[organ] = {"dice": float(dice[index - 1]), "nsd": nsd, "hd95": hd95, "n_ref": n_ref, "n_pred": n_pred}
    return out


def nanmean(values) -> float:
    """Mean ignoring NaN; NaN when nothing is left (no warning)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan
