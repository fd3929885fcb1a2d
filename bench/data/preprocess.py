"""The one deterministic preprocessing every method sees, computed once per dataset and settings.

RAS orientation, isotropic resampling (image linear, label nearest), HU window scaled to [0, 1],
crop to the body; each preprocessed case keeps the affine of its grid, so a prediction on it can be
taken back to the original file's grid (``to_original_grid``). Results are cached as ``<cache>/preprocessed/<key>/<case>.npz`` where the key
hashes the settings and a fingerprint of the source files, so a changed setting or a changed file
gives a new entry instead of silently reusing a stale one. Every case file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.data.btcv import Case, Dataset, read_pair
from bench.io import atomic_write

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


def dataset_fingerprint(dataset: Dataset, case_ids) -> str:
    """Hash of the source files' paths, sizes and modification times: changes when data change."""
    h = hashlib.sha256()
    for cid in sorted(case_ids):
        case = dataset.cases[cid]
        for path in (case.image, case.label):
            stat = path.stat() if path is not None and path.exists() else None
            h.update(f"{path}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n".encode())
    return h.hexdigest()[:12]


def cache_dir_for(cache_root: Path, dataset: Dataset, settings: PreprocessSettings) -> Path:
    # The fingerprint covers every case the dataset has, so any file change moves the whole entry.
    return Path(cache_root) / "preprocessed" / f"{dataset.source}-{dataset_fingerprint(dataset, dataset.cases)}-{settings.key()}"


def _transforms(settings: PreprocessSettings):
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )

    steps = [
        EnsureChannelFirstd(keys=("image", "label"), channel_dim="no_channel"),
        Orientationd(keys=("image", "label"), axcodes=settings.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys=("image", "label"), pixdim=(settings.spacing_mm,) * 3, mode=("bilinear", "nearest")),
        ScaleIntensityRanged(keys="image", a_min=settings.hu_min, a_max=settings.hu_max, b_min=0.0, b_max=1.0, clip=True),
    ]
    if settings.crop_foreground:
        # Everything above the window's floor is body; air and the table edge go.
        steps.append(CropForegroundd(keys=("image", "label"), source_key="image", margin=2, allow_smaller=True))
    return Compose(steps)


def preprocess_case(case: Case, settings: PreprocessSettings) -> PreprocessedCase:
    """Read, validate and preprocess one case (no caching)."""
    from monai.data import MetaTensor

    image, label, affine = read_pair(case)
    import torch

    data = {
        "image": MetaTensor(torch.as_tensor(np.asarray(image, dtype=np.float32)), affine=torch.as_tensor(affine)),
        "label": MetaTensor(torch.as_tensor(np.asarray(label, dtype=np.float32)), affine=torch.as_tensor(affine)),
    }
    out = _transforms(settings)(data)
    return PreprocessedCase(
        case_id=case.case_id,
        image=out["image"].numpy().astype(np.float32),
        label=np.rint(out["label"].numpy()).astype(np.uint8),
        spacing_mm=settings.spacing_mm,
        affine=np.asarray(out["image"].affine, dtype=np.float64),
    )


def _savez(path: Path, **arrays) -> None:
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_or_preprocess(case: Case, settings: PreprocessSettings, cache_dir: Path) -> tuple[PreprocessedCase, bool]:
    """The cached preprocessed case, computing and caching it first if needed. Returns (case, was_cached)."""
    path = Path(cache_dir) / f"{case.case_id}.npz"
    if path.exists():
        try:
            with np.load(path) as npz:
                return PreprocessedCase(case.case_id, npz["image"], npz["label"], float(npz["spacing_mm"]), npz["affine"]), True
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never trusted
    result = preprocess_case(case, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    _savez(path, image=result.image, label=result.label, spacing_mm=np.float32(result.spacing_mm), affine=result.affine)
    return result, False


def to_original_grid(
    probabilities,
    preprocessed_affine: np.ndarray,
    original_shape: tuple[int, int, int],
    original_affine: np.ndarray,
    max_chunk_bytes: int = 256 << 20,
) -> np.ndarray:
    """Class probabilities (C, X, Y, Z) on a preprocessed grid -> label map on the original file's grid.

    One affine map undoes the crop, the resampling and the reorientation together: each original
    voxel centre is carried into the preprocessed grid (inverse(preprocessed affine) @ original
    affine), the probabilities are interpolated there (trilinear, as nnU-Net resamples
    probabilities, not labels) and the argmax taken; voxels outside the preprocessed grid (cropped
    away as air) are background. The original grid is filled a slab of slices at a time, so the
    memory beyond the probabilities themselves stays under ``max_chunk_bytes``.
    """
    import torch
    import torch.nn.functional as F

    probs = torch.as_tensor(probabilities, dtype=torch.float32)
    classes, sizes = probs.shape[0], probs.shape[1:]
    to_preprocessed = torch.as_tensor(np.linalg.inv(preprocessed_affine) @ np.asarray(original_affine, dtype=np.float64))
    nx, ny, nz = (int(n) for n in original_shape)
    # grid_sample's last grid axis indexes the input's last dimension first: (Z, Y, X) order.
    scale = torch.tensor([2.0 / max(int(n) - 1, 1) for n in reversed(sizes)], dtype=torch.float64)
    per_slice = nx * ny * (classes * 4 + 3 * 8)
    chunk = max(1, min(nz, max_chunk_bytes // per_slice))
    out = np.zeros((nx, ny, nz), dtype=np.uint8)
    i, j = torch.meshgrid(torch.arange(nx, dtype=torch.float64), torch.arange(ny, dtype=torch.float64), indexing="ij")
    for start in range(0, nz, chunk):
        k = torch.arange(start, min(start + chunk, nz), dtype=torch.float64)
        index = torch.stack([i[..., None].expand(-1, -1, len(k)), j[..., None].expand(-1, -1, len(k)), k.expand(nx, ny, -1)], dim=-1)
        coords = index @ to_preprocessed[:3, :3].T + to_preprocessed[:3, 3]  # (nx, ny, nk, 3) in X, Y, Z
        grid = (coords.flip(-1) * scale - 1.0).to(torch.float32)
        sampled = F.grid_sample(probs[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
        out[:, :, start : start + len(k)] = sampled.argmax(dim=0).to(torch.uint8).numpy()
    return out
