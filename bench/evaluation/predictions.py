"""What a test case's prediction is scored against: its label file as stored (``Reference``), and
a pipeline's prediction with its truth (``CasePrediction``); records every pipeline shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.volumes import voxel_size_mm


@dataclass(frozen=True)
class Reference:
    """A test case's label as stored in its file: what original-space scores compare against."""

    label: np.ndarray  # (X, Y, Z) uint8
    affine: np.ndarray  # (4, 4)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return voxel_size_mm(self.affine)


@dataclass(frozen=True)
class CasePrediction:
    """A test case's label map and what it is scored against: the label file's labels on their own
    grid (``reference`` set, where the prediction can be saved) or the preprocessed label."""

    case_id: str
    prediction: np.ndarray  # (X, Y, Z) uint8, on the grid of ``truth``
    truth: np.ndarray
    spacing_mm: tuple[float, float, float]
    reference: Reference | None = None
