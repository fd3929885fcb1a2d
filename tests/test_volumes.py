"""Volumes as people store them: NIfTI files and DICOM series folders read into one convention
(array in the file's voxel order, RAS affine), and grids that are one grid in another voxel order."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bench.data.volumes import axis_order, onto_grid, orientation_codes, read_grid, read_volume
from bench.errors import DataError
from tests.conftest import invoke, write_nifti


def write_dicom_series(folder, array: np.ndarray, spacing=(0.8, 0.7, 2.5), origin=(-100.0, -120.0, 30.0), series_uid="1.2.826.0.1.1"):
    """``array`` (X, Y, Z) as a CT DICOM series, one file per slice, written by SimpleITK with the
    tags a series reader needs (position and orientation per slice, one series UID)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[2]):
        plane = sitk.GetImageFromArray(np.ascontiguousarray(array[:, :, k].T.astype(np.int16)))
        plane.SetSpacing(spacing[:2])
        position = (origin[0], origin[1], origin[2] + k * spacing[2])
        for tag, value in {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.0",
            "0020|000e": series_uid,
            "0020|0032": "\\".join(f"{v:g}" for v in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1),
            "0028|0030": f"{spacing[1]:g}\\{spacing[0]:g}",
            "0018|0050": f"{spacing[2]:g}",
            "0008|0018": f"{series_uid}.{k + 1}",
        }.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
    return folder


def test_a_dicom_series_reads_as_simpleitk_sees_it_in_ras(tmp_path):
    """Voxel (i, j, k) of the series is the DICOM pixel at column i, row j of slice k, and the affine
    places it where DICOM's LPS position says, turned to RAS (x and y negated)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(-1000, 1000, size=(7, 6, 5)).astype(np.int16)
    folder = write_dicom_series(tmp_path / "series", pixels)
    volume = read_volume(folder)
    np.testing.assert_array_equal(volume.array, pixels)
    lps_of_voxel = np.array([-100.0 + 0.8 * 3, -120.0 + 0.7 * 2, 30.0 + 2.5 * 4])  # voxel (3, 2, 4)
    np.testing.assert_allclose(volume.affine @ [3, 2, 4, 1], [-lps_of_voxel[0], -lps_of_voxel[1], lps_of_voxel[2], 1], atol=1e-4)
    assert orientation_codes(volume.affine) == "LPS" and read_grid(folder) == ((7, 6, 5), pytest.approx((0.8, 0.7, 2.5)))


def test_a_folder_without_one_series_is_one_line_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty: a folder, but it holds no DICOM series"):
        read_volume(empty)
    both = tmp_path / "both"
    write_dicom_series(both / "a", np.zeros((4, 4, 2)), series_uid="1.2.3")
    write_dicom_series(both / "b", np.zeros((4, 4, 2)), series_uid="1.2.4")
    for path in (both / "a").iterdir():
        path.rename(both / f"a-{path.name}")
    for path in (both / "b").iterdir():
        path.rename(both / f"b-{path.name}")
    with pytest.raises(DataError, match="both: holds 2 DICOM series; give each its own folder"):
        read_volume(both)


def test_the_same_grid_in_another_voxel_order_is_one_grid(tmp_path):
    """A label written with its axes flipped or permuted lands voxel for voxel on its image, checked
    through world coordinates; a shifted or resampled grid does not."""
    rng = np.random.default_rng(1)
    image_affine = np.array([[-0.9, 0, 0, 40.0], [0, -0.8, 0, 60.0], [0, 0, 2.0, -300.0], [0, 0, 0, 1]])
    label = rng.integers(0, 5, size=(6, 5, 4)).astype(np.uint8)
    # The same voxel centres, stored with y reversed and x and z swapped.
    flipped = label[:, ::-1, :].transpose(2, 1, 0)
    voxel_to_stored = np.array([[0, 0, 1, 0], [0, -1, 0, 4], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    stored_affine = image_affine @ np.linalg.inv(voxel_to_stored)
    back = onto_grid(flipped, stored_affine, image_affine, label.shape)
    np.testing.assert_array_equal(back, label)
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:  # the same world point holds the same value
        world = image_affine @ [*ijk, 1]
        stored_index = np.rint(np.linalg.inv(stored_affine) @ world).astype(int)[:3]
        assert flipped[tuple(stored_index)] == label[ijk]
    shifted = stored_affine.copy()
    shifted[0, 3] += 0.5
    assert onto_grid(flipped, shifted, image_affine, label.shape) is None
    assert axis_order(stored_affine @ np.diag([1.1, 1, 1, 1]), flipped.shape, image_affine, label.shape) is None
    assert onto_grid(label, image_affine, image_affine, label.shape) is label


def test_data_check_reorders_a_label_stored_in_another_voxel_order_and_says_so(tmp_path):
    image = np.zeros((6, 5, 4), np.int16)
    label = np.zeros((6, 5, 4), np.uint8)
    label[1, 1, 1] = 1
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    las = affine.copy()
    las[0, 0], las[0, 3] = -1.0, 5.0  # x reversed: voxel 0 of the label is voxel 5 of the image
    write_nifti(tmp_path / "d" / "img" / "img0001.nii.gz", image, affine)
    write_nifti(tmp_path / "d" / "label" / "label0001.nii.gz", label[::-1].copy(), las)
    result = invoke("data", "check", "--data-root", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "note: case 0001: label stored LAS, image RAS: the same grid in another voxel order" in result.output
    assert "1 cases OK" in result.output and "bench splits make --data-root" in result.output
    moved = tmp_path / "d" / "label" / "label0001.nii.gz"
    nib.save(nib.Nifti1Image(label, las @ np.diag([1, 1, 2.0, 1])), str(moved))  # another spacing: not one grid
    result = invoke("data", "check", "--data-root", tmp_path / "d")
    assert result.exit_code == 2 and "image and label grids differ (image 6x5x4 RAS, 1x1x1 mm" in result.output
