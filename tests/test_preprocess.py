from __future__ import annotations

import numpy as np
import pytest

from bench.data.btcv import locate_dataset
from bench.data.labels import ORGANS
from bench.data.preprocess import cache_dir_for, load_or_preprocess, preprocess_case
from bench.data.settings import PreprocessSettings
from tests.conftest import calls_when_started_together, write_nifti


def test_orientation_spacing_window_and_crop(tmp_path):
    """An LPS-stored volume with 2x2x4 mm voxels comes out RAS, 4 mm isotropic, in [0, 1], cropped to the body."""
    shape = (20, 16, 6)
    hu = np.full(shape, -1000, np.int16)
    hu[4:16, 4:12, :] = 50  # body
    hu[4:8, 4:12, :] = 400  # bright block at low i: with affine[0, 0] < 0 that is the patient's right
    label = np.zeros(shape, np.uint8)
    label[4:8, 4:12, :] = 6
    affine = np.diag([-2.0, -2.0, 4.0, 1.0])
    write_nifti(tmp_path / "img" / "img0001.nii.gz", hu, affine)
    write_nifti(tmp_path / "label" / "label0001.nii.gz", label, affine)
    case = locate_dataset(tmp_path).cases["0001"]
    out = preprocess_case(case, PreprocessSettings(spacing_mm=4.0))
    image, lab = out.image[0], out.label[0]
    assert out.image.dtype == np.float32 and out.label.dtype == np.uint8
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.max() == pytest.approx(1.0)  # 400 HU clipped to 250 -> 1
    assert np.isclose(image, (50 + 200) / 450, atol=0.02).any()
    # Body 12x8 voxels of 2 mm = 24x16 mm -> 6x4 at 4 mm (+ 2-voxel margin, clipped to the volume).
    assert 6 <= image.shape[0] <= 10 and 4 <= image.shape[1] <= 8 and image.shape[2] == 6
    # After reorientation to RAS, i grows towards the patient's right: the block moves to the high-i end.
    xs = np.argwhere(lab == 6)[:, 0]
    assert xs.min() > image.shape[0] / 2 - 1
    assert set(np.unique(lab)) <= {0, 6}


def test_cache_is_reused_and_keyed_by_settings(tiny_synthetic, isolated_cache):
    dataset = locate_dataset(tiny_synthetic, synthetic=True)
    case = dataset.cases["0001"]
    settings = PreprocessSettings(spacing_mm=8.0)
    cache_dir = cache_dir_for(isolated_cache, dataset, settings)
    first, cached = load_or_preprocess(case, settings, cache_dir)
    assert not cached
    second, cached = load_or_preprocess(case, settings, cache_dir)
    assert cached
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.label, second.label)
    other = cache_dir_for(isolated_cache, dataset, PreprocessSettings(spacing_mm=6.0))
    assert other != cache_dir
    assert cache_dir_for(isolated_cache, dataset, PreprocessSettings(spacing_mm=8.0, hu_max=300)) != cache_dir
    # A damaged cache file is recomputed rather than trusted.
    (cache_dir / "0001.npz").write_bytes(b"garbage")
    third, cached = load_or_preprocess(case, settings, cache_dir)
    assert not cached
    np.testing.assert_array_equal(first.label, third.label)


def test_synthetic_anatomy_survives_preprocessing(tiny_synthetic):
    """After RAS reorientation the liver (patient's right) lies at higher x index than the spleen."""
    case = locate_dataset(tiny_synthetic).cases["0002"]
    out = preprocess_case(case, PreprocessSettings(spacing_mm=8.0))
    label = out.label[0]
    liver = np.argwhere(label == ORGANS.index("liver") + 1)[:, 0].mean()
    spleen = np.argwhere(label == ORGANS.index("spleen") + 1)[:, 0].mean()
    assert liver > spleen


def test_cache_entry_changes_when_a_source_file_changes(tiny_synthetic, isolated_cache, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_synthetic, copy)
    dataset = locate_dataset(copy, synthetic=True)
    settings = PreprocessSettings(spacing_mm=8.0)
    before = cache_dir_for(isolated_cache, dataset, settings)
    label = dataset.cases["0002"].label
    label.write_bytes(label.read_bytes())  # same bytes, rewritten: the entry cannot know and must move
    assert cache_dir_for(isolated_cache, locate_dataset(copy, synthetic=True), settings) != before


@pytest.mark.slow
def test_processes_started_together_preprocess_a_case_once(tiny_synthetic, isolated_cache, tmp_path):
    dataset = locate_dataset(tiny_synthetic, synthetic=True)
    settings = PreprocessSettings(spacing_mm=8.0)
    args = (dataset.cases["0001"], settings, cache_dir_for(isolated_cache, dataset, settings))
    module = "bench.data.preprocess"
    # the other waited for the case and read it from the cache
    assert calls_when_started_together(module, "preprocess_case", "load_or_preprocess", args, tmp_path / "calls") == 1
