"""Class probabilities on a preprocessed grid taken back to the grid of an original file: the step
that lets every score be computed against the untouched label file (``to_original_grid``)."""

from __future__ import annotations

import numpy as np


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
