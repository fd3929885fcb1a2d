"""Reading a volume as people store it: a NIfTI file, or a folder holding one DICOM series (read with
SimpleITK's series reader, as nnU-Net and TotalSegmentator read them). Either way the result is the
voxel array in the file's own axis order and its affine (voxel index -> RAS millimetres), the
convention nibabel and MONAI use; DICOM's LPS world coordinates are turned into RAS here, once.

Two grids that place the same voxel centres in the world in another axis order or direction (a
DICOM series read as LPS, its label written LAS) are one grid: ``onto_grid`` reorders a label
array onto the other's voxel order, so nothing downstream resamples or refuses it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# DICOM's patient coordinates run left and posterior, RAS's right and anterior: x and y flip.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# Voxel centres this close (mm) are the same place: headers store affines in float32.
GRID_TOLERANCE_MM = 1e-3
# Two grids in another axis order are one when their corners agree to this fraction of a voxel.
CORNER_TOLERANCE_VOXELS = 0.01


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES)


def is_volume(path: Path) -> bool:
    """A NIfTI file or a folder (which must hold one DICOM series to be read)."""
    return is_nifti(path) or path.is_dir()


def volume_stem(path: Path) -> str:
    """The name of a volume without its suffix: ``img0001.nii.gz`` and the folder ``img0001`` give ``img0001``."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def voxel_size_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """The voxel size along each array axis: the lengths of the affine's columns."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


@dataclass(frozen=True)
class Volume:
    array: np.ndarray  # (X, Y, Z) in the file's own voxel order and data type
    affine: np.ndarray  # (4, 4) float64, voxel index -> RAS mm

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return voxel_size_mm(self.affine)


def dicom_series_files(folder: Path) -> list[str]:
    """The files of the one DICOM series in ``folder``, in slice order; DataError naming the
    folder when it holds none or several."""
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise DataError(f"{folder}: a folder, but it holds no DICOM series (expected a NIfTI file or a folder of one series)")
    if len(series) > 1:
        raise DataError(f"{folder}: holds {len(series)} DICOM series; give each its own folder")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def read_volume(path: Path) -> Volume:
    """The voxels and affine of a NIfTI file or a DICOM series folder; DataError naming the path
    when it is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        return _read_dicom(path)
    if not path.is_file():
        raise DataError(f"{path}: missing")
    import nibabel as nib

    try:
        nifti = nib.load(str(path))
        array = np.asanyarray(nifti.dataobj)
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {array.shape}")
    return Volume(array, np.asarray(nifti.affine, dtype=np.float64))


def _read_dicom(folder: Path) -> Volume:
    import SimpleITK as sitk

    files = dicom_series_files(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise DataError(f"{folder}: cannot read its DICOM series ({str(exc).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        dimension, channels = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
        raise DataError(f"{folder}: expected one 3D grey-value series, got {dimension}D with {channels} channels")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # SimpleITK gives (z, y, x)
    return Volume(np.ascontiguousarray(array), dicom_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin()))


def dicom_affine(direction, spacing, origin) -> np.ndarray:
    """The RAS affine of an ITK image's LPS direction (row-major 3x3), spacing and origin."""
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(origin, dtype=np.float64)
    return affine


def read_grid(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(shape, voxel size in mm) of a volume; a NIfTI header is read without its voxels."""
    path = Path(path)
    if path.is_dir():
        volume = _read_dicom(path)
        return tuple(int(n) for n in volume.array.shape), volume.spacing_mm
    import nibabel as nib

    header = nib.load(str(path)).header
    return tuple(int(n) for n in header.get_data_shape()[:3]), tuple(float(z) for z in header.get_zooms()[:3])


def content_files(path: Path) -> list[Path]:
    """The files a volume is made of: itself, or a series folder's files (for content hashes)."""
    path = Path(path)
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def content_sha256(path: Path, file_hash) -> str:
    """SHA-256 of a volume's content; ``file_hash(path)`` hashes one file (cached by the caller)."""
    files = content_files(path)
    if len(files) == 1 and files[0] == Path(path):
        return file_hash(files[0])
    return hashlib.sha256("".join(f"{f.name}:{file_hash(f)};" for f in files).encode()).hexdigest()


def axis_order(from_affine: np.ndarray, from_shape, to_affine: np.ndarray, to_shape) -> tuple[tuple[int, ...], tuple[bool, ...]] | None:
    """How to reorder an array on grid ``from`` so that it lies on grid ``to``, when both grids hold
    the same voxel centres: (for each axis of ``to``, the axis of ``from`` it reads; whether that
    axis runs backwards). None when the grids differ in anything but axis order and direction."""
    try:
        to_from = np.linalg.inv(np.asarray(from_affine, dtype=np.float64)) @ np.asarray(to_affine, dtype=np.float64)
    except np.linalg.LinAlgError:  # a header without a usable affine places no voxel anywhere
        return None
    linear, shift = to_from[:3, :3], to_from[:3, 3]
    axes, backwards = [], []
    for a in range(3):
        source = int(np.argmax(np.abs(linear[:, a])))
        sign = float(np.sign(linear[source, a]))
        axes.append(source)
        backwards.append(sign < 0)
    if sorted(axes) != [0, 1, 2]:
        return None
    ideal = np.zeros((3, 3))
    ideal_shift = np.zeros(3)
    for a, (source, back) in enumerate(zip(axes, backwards, strict=True)):
        if int(to_shape[a]) != int(from_shape[source]):
            return None
        ideal[source, a] = -1.0 if back else 1.0
        ideal_shift[source] = int(from_shape[source]) - 1 if back else 0
    # Every corner of ``to`` must land on the matching corner of ``from``, to a hundredth of a voxel.
    corners = np.array([[i, j, k] for i in (0, to_shape[0] - 1) for j in (0, to_shape[1] - 1) for k in (0, to_shape[2] - 1)], dtype=float)
    if np.abs(corners @ (linear - ideal).T + (shift - ideal_shift)).max() > CORNER_TOLERANCE_VOXELS:
        return None
    return tuple(axes), tuple(backwards)


def same_grid(a_affine, a_shape, b_affine, b_shape) -> bool:
    """Identical grids: same shape and affine (to float32 header precision)."""
    return tuple(a_shape) == tuple(b_shape) and bool(np.allclose(a_affine, b_affine, atol=GRID_TOLERANCE_MM))


def onto_grid(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, target_shape) -> np.ndarray | None:
    """``array`` (on grid ``affine``) reordered onto the target grid: itself when the grids are one,
    a transposed and flipped view when they hold the same voxel centres in another order, None
    when they differ otherwise (another spacing, origin, extent or an oblique turn)."""
    if same_grid(affine, array.shape, target_affine, target_shape):
        return array
    order = axis_order(affine, array.shape, target_affine, target_shape)
    if order is None:
        return None
    axes, backwards = order
    moved = np.transpose(array, axes)
    flips = tuple(a for a, back in enumerate(backwards) if back)
    return np.ascontiguousarray(np.flip(moved, axis=flips) if flips else moved)


def orientation_codes(affine: np.ndarray) -> str:
    """``RAS``, ``LPS``, ``LAS``...: where each voxel axis points."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))
