"""The one deterministic preprocessing every method sees, computed once per dataset and settings.

RAS orientation, isotropic resampling (image linear, label nearest), HU window scaled to [0, 1],
crop to the body; each preprocessed case keeps the affine of its grid, so a prediction on it can be
taken back to the original file's grid (``to_original_grid``). Results are cached as
``<cache>/preprocessed/<key>/<case>.npz`` where the key hashes the settings and a fingerprint of
the source files, so a changed setting or a changed file gives a new entry instead of silently
reusing a stale one. Every case file is written atomically.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.btcv import Case, Dataset, read_pair
from bench.data.labels import BTCV_LABELS, LabelSet
from bench.data.settings import PreprocessSettings
from bench.io import atomic_write, locked


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


def preprocess_case(case: Case, settings: PreprocessSettings, labels: LabelSet = BTCV_LABELS) -> PreprocessedCase:
    """Read, validate (label values: ``labels``) and preprocess one case (no caching)."""
    from monai.data import MetaTensor

    image, label, affine = read_pair(case, labels)
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
    case: Case, settings: PreprocessSettings, cache_dir: Path, labels: LabelSet = BTCV_LABELS
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
        result = preprocess_case(case, settings, labels)
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
    probabilities, not labels; zero beyond the grid's edge) and the argmax taken, so voxels outside
    the preprocessed grid (cropped away as air) are background. The original grid is filled a slab
    of slices at a time, so the memory beyond the probabilities stays under ``max_chunk_bytes``.

    When the map only permutes, flips, scales and shifts axes (every scan stored without an
    oblique direction), trilinear interpolation is three 1-D interpolations, one per axis, which is
    several times faster than sampling each voxel in 3-D; an oblique map takes the 3-D path.
    """
    import torch

    probs = torch.as_tensor(probabilities, dtype=torch.float32)  # stays on its device (CUDA: fast)
    to_preprocessed = np.linalg.inv(preprocessed_affine) @ np.asarray(original_affine, dtype=np.float64)
    shape = tuple(int(n) for n in original_shape)
    per_slice = shape[0] * shape[1] * (probs.shape[0] * 4 * 3)
    chunk = max(1, min(shape[2], max_chunk_bytes // per_slice))
    linear = to_preprocessed[:3, :3]
    axis_aligned = all(np.count_nonzero(np.abs(linear[:, a]) > 1e-9 * np.abs(linear).max()) == 1 for a in range(3))
    axis_aligned = axis_aligned and sorted(int(np.argmax(np.abs(linear[:, a]))) for a in range(3)) == [0, 1, 2]
    out = np.zeros(shape, dtype=np.uint8)
    if axis_aligned:
        # Beyond the preprocessed grid every probability is zero and the argmax background, so
        # only the box of original voxels it reaches (the body, about half of a scan) is computed.
        box = _reached_box(to_preprocessed, shape, probs.shape[1:])
        if box is None:
            return out
        offset = np.array([box[0].start, box[1].start, box[2].start, 0.0])
        shifted = to_preprocessed.copy()
        shifted[:3, 3] = to_preprocessed[:3, :] @ offset + to_preprocessed[:3, 3]
        inner = tuple(b.stop - b.start for b in box)
        for start in range(0, inner[2], chunk):
            k = np.arange(start, min(start + chunk, inner[2]))
            slab = _argmax_last(_separable_slab(probs, shifted, inner, k)).numpy()
            out[box[0], box[1], box[2].start + k[0] : box[2].start + k[-1] + 1] = slab
        return out
    for start in range(0, shape[2], chunk):
        k = np.arange(start, min(start + chunk, shape[2]))
        out[:, :, k[0] : k[-1] + 1] = _argmax_last(_sampled_slab(probs, to_preprocessed, shape, k)).numpy()
    return out


def _reached_box(to_preprocessed: np.ndarray, shape: tuple[int, int, int], sizes) -> tuple[slice, slice, slice] | None:
    """Index ranges of the original axes whose voxels lie within one voxel of the preprocessed grid
    (an axis-permuting map), where interpolation can give a non-zero value; None if there are none."""
    box = []
    for a in range(3):
        source = int(np.argmax(np.abs(to_preprocessed[:3, a])))
        coords = to_preprocessed[source, a] * np.arange(shape[a]) + to_preprocessed[source, 3]
        inside = np.flatnonzero((coords > -1) & (coords < int(sizes[source])))
        if inside.size == 0:
            return None
        box.append(slice(int(inside[0]), int(inside[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def _argmax_last(values):
    """Index of the largest value along the last axis, as uint8 on the CPU (fast when that axis is
    contiguous: over a leading channel axis argmax is three times slower)."""
    import torch

    return values.argmax(dim=-1).to(torch.uint8).cpu()


def _lerp_along(values, dim: int, coords: np.ndarray):
    """Linear interpolation of ``values`` along ``dim`` at fractional indices ``coords``, zero beyond
    the edges (as grid_sample's zero padding with align_corners). Reads only the slices it needs."""
    import torch

    n = values.shape[dim]
    lower = np.floor(coords)
    upper = lower + 1
    fraction = coords - lower
    # A neighbour outside the grid contributes zero: its weight goes, its index is clamped to any valid one.
    weights = [(1 - fraction) * ((lower >= 0) & (lower <= n - 1)), fraction * ((upper >= 0) & (upper <= n - 1))]
    view = [1] * values.dim()
    view[dim] = -1
    out = None
    for index, weight in zip((lower, upper), weights, strict=True):
        taken = values.index_select(dim, torch.as_tensor(np.clip(index, 0, n - 1), dtype=torch.long, device=values.device))
        term = taken * torch.as_tensor(weight, dtype=values.dtype, device=values.device).view(view)
        out = term if out is None else out.add_(term)
    return out


def _separable_slab(probs, to_preprocessed: np.ndarray, shape: tuple[int, int, int], k: np.ndarray):
    """(X, Y, len(k), C) probabilities of original slices ``k`` for an axis-permuting map."""
    # Original axis a reads preprocessed axis source[a] at coordinate scale[a] * i + offset[a].
    source = [int(np.argmax(np.abs(to_preprocessed[:3, a]))) for a in range(3)]
    values = probs.permute(source[0] + 1, source[1] + 1, source[2] + 1, 0)  # channels last, original axis order
    indices = (np.arange(shape[0]), np.arange(shape[1]), k)
    for a in (2, 1, 0):  # the slab's own axis first: it is the one cut shortest
        coords = to_preprocessed[source[a], a] * indices[a] + to_preprocessed[source[a], 3]
        values = _lerp_along(values, a, coords)
    return values


def _sampled_slab(probs, to_preprocessed: np.ndarray, shape: tuple[int, int, int], k: np.ndarray):
    """(X, Y, len(k), C) probabilities of original slices ``k``, sampled in 3-D (any affine map)."""
    import torch
    import torch.nn.functional as F

    sizes = probs.shape[1:]
    m = torch.as_tensor(to_preprocessed, dtype=torch.float64, device=probs.device)
    i = torch.arange(shape[0], dtype=torch.float64, device=probs.device)[:, None, None, None]
    j = torch.arange(shape[1], dtype=torch.float64, device=probs.device)[None, :, None, None]
    kk = torch.as_tensor(k, dtype=torch.float64, device=probs.device)[None, None, :, None]
    coords = i * m[:3, 0] + j * m[:3, 1] + kk * m[:3, 2] + m[:3, 3]  # (X, Y, k, 3) in preprocessed X, Y, Z
    # grid_sample's last grid axis indexes the input's last dimension first: (Z, Y, X) order, in [-1, 1].
    scale = torch.tensor([2.0 / max(int(n) - 1, 1) for n in reversed(sizes)], dtype=torch.float64, device=probs.device)
    grid = (coords.flip(-1) * scale - 1.0).to(torch.float32)
    sampled = F.grid_sample(probs[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return sampled.permute(1, 2, 3, 0)
