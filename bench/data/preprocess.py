"""The one deterministic preprocessing every method sees, computed once per dataset and settings.

RAS orientation, isotropic resampling (image linear, label nearest), HU window scaled to [0, 1],
crop to the body; each preprocessed case keeps the affine of its grid, so a prediction on it can be
taken back to the original file's grid (``bench.data.regrid.to_original_grid``). Results are cached as
``<cache>/preprocessed/<key>/<case>.npz`` where the key hashes the settings and a fingerprint of
the source files, so a changed setting or a changed file gives a new entry instead of silently
reusing a stale one. Every case file is written atomically.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from bench.data.btcv import Case, Dataset, read_pair
from bench.data.labels import BTCV_LABELS, LabelSet
from bench.data.settings import PreprocessedCase, PreprocessSettings
from bench.data.volumes import content_files
from bench.io import atomic_write, locked


def dataset_fingerprint(dataset: Dataset, case_ids) -> str:
    """Hash of the source files' paths, sizes and modification times: changes when data change."""
    h = hashlib.sha256()
    for cid in sorted(case_ids):
        case = dataset.cases[cid]
        for volume in (case.image, case.label):
            for path in content_files(volume) if volume is not None and volume.exists() else [volume]:
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


def preprocess_case(
    case: Case, settings: PreprocessSettings, labels: LabelSet = BTCV_LABELS, notes: list[str] | None = None
) -> PreprocessedCase:
    """Read, validate (label values: ``labels``) and preprocess one case (no caching); what reading
    adapted (a label reordered onto its image's grid) goes to ``notes``."""
    from monai.data import MetaTensor

    image, label, affine = read_pair(case, labels, notes)
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


def preprocess_image(image: np.ndarray, affine: np.ndarray, settings: PreprocessSettings) -> tuple[np.ndarray, np.ndarray]:
    """An image without a label through the same steps as a case: (image (1, X, Y, Z), its affine)."""
    import torch
    from monai.data import MetaTensor

    pixels = torch.as_tensor(np.asarray(image, dtype=np.float32))
    data = {
        "image": MetaTensor(pixels, affine=torch.as_tensor(affine)),
        "label": MetaTensor(torch.zeros_like(pixels), affine=torch.as_tensor(affine)),  # the steps move both
    }
    out = _transforms(settings)(data)
    return out["image"].numpy().astype(np.float32), np.asarray(out["image"].affine, dtype=np.float64)


# A cache entry is np.savez, uncompressed: the float32 image and the uint8 label of every voxel.
CACHED_BYTES_PER_VOXEL = 5


def cache_bytes_upper_bound(grids: Iterable[tuple[Sequence[int], Sequence[float]]], settings: PreprocessSettings) -> int:
    """At most how many bytes the preprocessing cache takes for volumes of these (shape, voxel size
    in mm): every voxel resampled to the settings' spacing, before the body crop removes the air."""
    total = 0
    for shape, zooms in grids:
        total += math.prod(math.ceil(n * mm / settings.spacing_mm) for n, mm in zip(shape, zooms, strict=True))
    return total * CACHED_BYTES_PER_VOXEL


def _savez(path: Path, **arrays) -> None:
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _read_cached(path: Path, case_id: str) -> PreprocessedCase | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as npz:
            return PreprocessedCase(case_id, npz["image"], npz["label"], float(npz["spacing_mm"]), npz["affine"])
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never trusted
        return None


def load_or_preprocess(
    case: Case, settings: PreprocessSettings, cache_dir: Path, labels: LabelSet = BTCV_LABELS, notes: list[str] | None = None
) -> tuple[PreprocessedCase, bool]:
    """The cached preprocessed case, computing and caching it first if needed. Returns (case, was_cached)."""
    path = Path(cache_dir) / f"{case.case_id}.npz"
    if (cached := _read_cached(path, case.case_id)) is not None:
        return cached, True
    path.parent.mkdir(parents=True, exist_ok=True)
    # Processes started together take turns case by case: the second finds what the first wrote.
    with locked(path.with_name(f".{path.name}.lock")):
        if (cached := _read_cached(path, case.case_id)) is not None:
            return cached, True
        result = preprocess_case(case, settings, labels, notes)
        _savez(path, image=result.image, label=result.label, spacing_mm=np.float32(result.spacing_mm), affine=result.affine)
    return result, False
