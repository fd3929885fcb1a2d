"""Sliding-window inference and scoring on preprocessed cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bench.data.preprocess import PreprocessedCase
from bench.device import autocast_for
from bench.metrics import dice_per_organ, score_case
from bench.runfiles import CaseScores


@torch.no_grad()
def predict_case(
    model: nn.Module,
    image: np.ndarray,
    roi: int,
    overlap: float,
    sw_batch_size: int,
    device: str,
) -> np.ndarray:
    """Label map (X, Y, Z) for a (1, X, Y, Z) image: gaussian-weighted sliding windows, then argmax."""
    from monai.inferers import sliding_window_inference

    was_training = model.training
    model.eval()
    try:
        inputs = torch.as_tensor(image, dtype=torch.float32)[None].to(device)
        with autocast_for(device):
            logits = sliding_window_inference(
                inputs,
                roi_size=(roi,) * 3,
                sw_batch_size=sw_batch_size,
                predictor=model,
                overlap=overlap,
                mode="gaussian",
            )
        return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
    finally:
        model.train(was_training)


def evaluate_cases(
    model: nn.Module,
    cases: Sequence[PreprocessedCase],
    roi: int,
    overlap: float,
    sw_batch_size: int,
    device: str,
    surface: bool = True,
    num_classes: int = 14,
) -> list[CaseScores]:
    """Per-case metrics (organ -> {"dice", "nsd"}); Dice only when surface is False."""
    from bench.data.labels import ORGANS

    results = []
    for case in cases:
        prediction = predict_case(model, case.image, roi, overlap, sw_batch_size, device)
        reference = case.label[0]
        if surface:
            metrics = score_case(prediction, reference, case.spacing_mm)
        else:
            dice = dice_per_organ(prediction, reference, num_classes)
            metrics = {organ: {"dice": float(d)} for organ, d in zip(ORGANS, dice, strict=True)}
        results.append(CaseScores(case.case_id, metrics))
    return results
