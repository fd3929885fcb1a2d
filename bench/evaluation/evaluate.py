"""Sliding-window inference and scoring, in the original label space (default) or on the
preprocessed grid.

Original space (``EVAL_SPACES[0]``): the network's class probabilities are carried back through the
preprocessing onto the grid of the case's label file (``bench.data.preprocess.to_original_grid``)
and compared with that file's labels, untouched, at its own voxel spacing, as nnU-Net's evaluator
and Touchstone score. Preprocessed space: both on the resampled, body-cropped grid of the profile's
spacing (the MONAI tutorials' convention); cheaper, but its NSD and HD95 are measured on the
profile's voxels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from bench.console import report_windows
from bench.data.labels import BTCV_LABELS, LabelSet
from bench.data.regrid import to_original_grid
from bench.data.settings import PreprocessedCase
from bench.device import autocast_for
from bench.evaluation.metrics import dice_per_organ
from bench.evaluation.predictions import CasePrediction, Reference
from bench.names import unknown_hint

EVAL_SPACES = ("original", "preprocessed")


def check_scoring_options(space: str, tolerance_mm: float) -> None:
    """UserError for an evaluation space or NSD tolerance that bench cannot score with."""
    from bench.errors import UserError

    if space not in EVAL_SPACES:
        raise UserError(f"unknown --eval-space {space!r}; {unknown_hint(space, EVAL_SPACES, 'choose one of')}")
    if not 0 < tolerance_mm <= 100:
        raise UserError(f"--nsd-tolerance must be a positive number of millimetres (at most 100), got {tolerance_mm:g}")


def reference_of(dataset, case_id: str) -> Reference:
    """A dataset case's label file as the reference its scores compare against."""
    from bench.data.btcv import read_label

    return Reference(*read_label(dataset.cases[case_id], dataset.labels))


@torch.no_grad()
def predict_probabilities(model: nn.Module, image: np.ndarray, roi: int, overlap: float, sw_batch_size: int, device: str) -> torch.Tensor:
    """Class probabilities (C, X, Y, Z), float32 on ``device``, for a (1, X, Y, Z) image:
    gaussian-weighted sliding windows, then softmax. The model comes back in the mode it was in."""
    from monai.inferers import sliding_window_inference

    was_training = model.training
    model.eval()
    batches, done = math.ceil(window_count(image.shape[1:], roi, overlap) / sw_batch_size), 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        logits = model(windows)
        done += 1
        report_windows(done, batches)
        return logits

    try:
        inputs = torch.as_tensor(image, dtype=torch.float32)[None].to(device)
        with autocast_for(device):
            logits = sliding_window_inference(
                inputs,
                roi_size=(roi,) * 3,
                sw_batch_size=sw_batch_size,
                predictor=predictor,
                overlap=overlap,
                mode="gaussian",
            )
        return torch.softmax(logits[0].float(), dim=0)
    finally:
        model.train(was_training)


def window_count(shape: tuple[int, ...], roi: int, overlap: float) -> int:
    """How many windows MONAI's sliding-window inference predicts over ``shape`` (its scan: a step of
    ``roi * (1 - overlap)`` voxels, at least 1, along an axis longer than the window; the image padded
    up to the window first)."""
    from monai.data.utils import dense_patch_slices

    padded = tuple(max(size, roi) for size in shape)
    steps = tuple(roi if size == roi else max(int(roi * (1 - overlap)), 1) for size in padded)
    return len(dense_patch_slices(padded, (roi,) * len(shape), steps))


def predict_case(model: nn.Module, image: np.ndarray, roi: int, overlap: float, sw_batch_size: int, device: str) -> np.ndarray:
    """Label map (X, Y, Z) on the preprocessed grid for a (1, X, Y, Z) image."""
    return predict_probabilities(model, image, roi, overlap, sw_batch_size, device).argmax(dim=0).to(torch.uint8).cpu().numpy()


# How a trained model turns a preprocessed case into class probabilities (C, X, Y, Z) on its grid:
# sliding windows for every harness-trained method, or a pipeline's own way (a prompted SAM).
Probabilities = Callable[[PreprocessedCase], torch.Tensor]


def sliding_windows(model: nn.Module, roi: int, overlap: float, sw_batch_size: int, device: str) -> Probabilities:
    """The harness's inference: gaussian-weighted sliding windows of ``roi`` over the case's image."""
    return lambda case: predict_probabilities(model, case.image, roi, overlap, sw_batch_size, device)


def predict_cases(
    cases: Sequence[PreprocessedCase],
    probabilities: Probabilities,
    space: str = "preprocessed",
    references: Callable[[str], Reference] | None = None,
) -> Iterator[CasePrediction]:
    """Each case predicted (``probabilities``, e.g. ``sliding_windows``), one at a time (a BTCV case's
    probabilities on its label grid take gigabytes): ``space="original"`` carries the probabilities
    back to the grid of the case's label file (``references``: case id -> its Reference); otherwise
    the prediction stays on the preprocessed grid."""
    if space not in EVAL_SPACES:
        raise ValueError(f"unknown evaluation space {space!r}; choose one of {', '.join(EVAL_SPACES)}")
    if space == "original" and references is None:
        raise ValueError("original-space scoring needs the reference label files")
    for case in cases:
        if space == "original":
            reference = references(case.case_id)
            with torch.no_grad():
                on_case = probabilities(case)
            prediction = to_original_grid(on_case, case.affine, reference.label.shape, reference.affine)
            del on_case
            yield CasePrediction(case.case_id, prediction, reference.label, reference.spacing_mm, reference)
        else:
            with torch.no_grad():
                prediction = probabilities(case).argmax(dim=0).to(torch.uint8).cpu().numpy()
            yield CasePrediction(case.case_id, prediction, case.label[0], (case.spacing_mm,) * 3)


def evaluate_cases(
    cases: Sequence[PreprocessedCase], probabilities: Probabilities, labels: LabelSet = BTCV_LABELS
) -> dict[str, dict[str, float]]:
    """Per-case Dice on the preprocessed grid (validation during training): case -> organ -> Dice."""
    results = {}
    for case in predict_cases(cases, probabilities):
        dice = dice_per_organ(case.prediction, case.truth, labels.num_classes)
        results[case.case_id] = {organ: float(d) for organ, d in zip(labels.organs, dice, strict=True)}
    return results


def validation_dice(
    cases: Sequence[PreprocessedCase], probabilities_of: Callable[[nn.Module], Probabilities], labels: LabelSet = BTCV_LABELS
) -> Callable[[nn.Module], float]:
    """The validation line of log.jsonl: a model's Dice on ``cases`` (preprocessed grid, predicted
    the way ``probabilities_of(model)`` predicts), averaged over organs and cases (NaN skipped)."""
    from bench.evaluation.metrics import nanmean

    def dice(model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        try:
            per_case = evaluate_cases(cases, probabilities_of(model), labels)
        finally:
            model.train(was_training)
        return nanmean(d for organs in per_case.values() for d in organs.values())

    return dice
