"""The settings of the preprocessing every harness-trained method shares (``bench.data.preprocess``),
as a profile chooses them; their own module, so that a profile is defined without the preprocessing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

PREPROCESS_VERSION = 2  # 2: the preprocessed grid's affine is kept


@dataclass(frozen=True)
class PreprocessSettings:
    spacing_mm: float = 1.0
    hu_min: float = -200.0
    hu_max: float = 250.0
    orientation: str = "RAS"
    crop_foreground: bool = True

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "version": PREPROCESS_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PreprocessedCase:
    case_id: str
    image: np.ndarray  # (1, X, Y, Z) float32 in [0, 1], RAS, isotropic
    label: np.ndarray  # (1, X, Y, Z) uint8
    spacing_mm: float
    affine: np.ndarray  # (4, 4) voxel index -> world (mm) of the preprocessed grid, crop included
