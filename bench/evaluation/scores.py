"""The metrics bench scores with, as data: one :class:`Metric` per metric (its name in summaries and
results.csv, how it is computed, its title, unit and scale in tables, which way is better, and what
it gives when one of the two masks is empty). Scoring, the summaries' means, results.csv, the
tables, the statistics and the report all loop over :func:`metric_specs`; a metric added here, or by
a package through the entry-point group ``sam3d_bench.metrics`` (``methods.plugins``; or a
``--plugin`` module) with
:func:`register_metric`, appears in all of them. A run scored before a metric existed reads as "not
scored" for it (``bench score`` on the run's saved predictions adds it).

Every metric shares nnU-Net's rule for an organ absent from both the reference and the
prediction: NaN, left out of every mean (``bench.evaluation.metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from bench.data.labels import BTCV_LABELS, LabelSet
from bench.evaluation.metrics import OrganMasks, diagonal_penalty, organ_dice, organ_hd95, organ_nsd, union_box
from bench.names import unknown_hint
from methods.plugins import BUILT_IN, MethodSource, PluginError, load_plugins, source_of


@dataclass(frozen=True)
class Metric:
    """One metric, per organ and case. ``compute`` gets an organ's :class:`OrganMasks` with both masks
    non-empty; ``when_one_empty`` is the value (or a function of the masks giving it) when exactly
    one of them is empty; both empty is NaN for every metric."""

    name: str  # key in summary.json and column of results.csv: lower case, no spaces
    title: str  # "Dice (%)": table headings
    unit: str  # "%" or "mm": what a shown value is in
    scale: float  # stored value x scale = shown value (fractions are stored, percentages shown)
    lower_is_better: bool
    compute: Callable[[OrganMasks], float]
    when_one_empty: float | Callable[[OrganMasks], float]
    empty_rule: str  # "0", "the field of view's ... diagonal": said in every summary's convention and under its tables
    about: str = ""  # one sentence for the report: what the metric measures
    source: MethodSource = field(default=BUILT_IN, compare=False)

    def score(self, masks: OrganMasks) -> float:
        """The metric of one organ, with the empty-mask rules."""
        pred_any, ref_any = bool(masks.prediction.any()), bool(masks.reference.any())
        if not pred_any and not ref_any:
            return math.nan
        if not (pred_any and ref_any):
            rule = self.when_one_empty
            return float(rule(masks) if callable(rule) else rule)
        return float(self.compute(masks))


BUILT_IN_METRICS = (
    Metric(
        "dice", "Dice (%)", "%", 100.0, False, organ_dice, 0.0, "0",
        "Dice is counted the nnU-Net way: an organ absent from both reference and prediction is skipped, "
        "absent from the reference only scores 0.",
    ),
    Metric(
        "nsd", "NSD (%)", "%", 100.0, False, organ_nsd, 0.0, "0",
        "Normalized surface Dice at the tolerance given under Scores: the share of both surfaces within the tolerance of the other.",
    ),
    # A missed organ's HD95 is a penalty, not surface-distance's infinity, which would make every mean infinite.
    Metric(
        "hd95", "HD95 (mm)", "mm", 1.0, True, organ_hd95, diagonal_penalty,
        "the field of view's corner-to-corner diagonal in mm",
        "95th-percentile Hausdorff distance between the surfaces, in millimetres.",
    ),
)  # fmt: skip
_REGISTERED: dict[str, Metric] = {m.name: m for m in BUILT_IN_METRICS}


def register_metric(metric: Metric) -> Metric:
    """Add a metric to every score, table and report from now on; PluginError for a name taken or
    not usable as a column."""
    name = metric.name
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise PluginError(f"metric name {name!r} must be lower-case letters, digits and underscores (a results.csv column)")
    if name in _REGISTERED or name in ("n_ref", "n_pred"):
        taken = _REGISTERED[name].source.describe() if name in _REGISTERED else "bench (voxel counts)"
        raise PluginError(f"metric {name!r} is registered twice ({taken}, and {source_of(metric.compute.__module__).describe()})")
    registered = replace(metric, source=source_of(metric.compute.__module__))
    _REGISTERED[name] = registered
    return registered


def metric_specs() -> tuple[Metric, ...]:
    """Every metric, the built-in ones (Dice, NSD, HD95) first, then the plugins' in the order they registered."""
    load_plugins()
    return tuple(_REGISTERED.values())


def metric_names() -> tuple[str, ...]:
    return tuple(m.name for m in metric_specs())


def get_metric(name: str) -> Metric:
    specs = {m.name: m for m in metric_specs()}
    if name not in specs:
        raise KeyError(f"unknown metric {name!r}; {unknown_hint(name, specs, 'registered')}")
    return specs[name]


def metric_convention() -> str:
    """What summary.json records of the empty-organ rules its numbers follow."""
    rules = ", ".join(f"{m.name} {m.empty_rule}" for m in metric_specs())
    return f"nnU-Net: organ absent in reference and prediction -> NaN for every metric (skipped in means); absent in one of them -> {rules}"


def score_case(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_mm: float | tuple[float, float, float],
    tolerance_mm: float = 1.0,
    labels: LabelSet = BTCV_LABELS,
) -> dict[str, dict[str, float]]:
    """{organ: {metric name: value, ..., "n_ref", "n_pred"}} for one case, every registered metric,
    organs of ``labels`` in value order; ``spacing_mm`` is the voxel size of both arrays (one number
    if isotropic), NSD's tolerance in mm."""
    from scipy.ndimage import find_objects

    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} != reference shape {reference.shape}")
    specs = metric_specs()
    spacing = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    num_classes = labels.num_classes
    # Each organ's box in both maps from one pass over each: comparing whole volumes label by label
    # cost more than the surface distances themselves.
    pred_boxes = find_objects(prediction, max_label=num_classes - 1)
    ref_boxes = find_objects(reference, max_label=num_classes - 1)
    out: dict[str, dict[str, float]] = {}
    for index, organ in enumerate(labels.organs, start=1):
        pred_box, ref_box = pred_boxes[index - 1], ref_boxes[index - 1]
        if pred_box is None and ref_box is None:
            out[organ] = {**{m.name: math.nan for m in specs}, "n_ref": 0, "n_pred": 0}
            continue
        box = union_box(pred_box, ref_box, margin=2, shape=prediction.shape)
        masks = OrganMasks(prediction[box] == index, reference[box] == index, spacing, prediction.shape, tolerance_mm)
        out[organ] = {
            **{m.name: m.score(masks) for m in specs},
            "n_ref": int(masks.reference.sum()),
            "n_pred": int(masks.prediction.sum()),
        }
    return out
