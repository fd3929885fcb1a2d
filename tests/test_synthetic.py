from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bench.data.abdomen import synthesize_case
from bench.data.labels import ORGANS


@pytest.fixture(scope="module")
def case_0001():
    return synthesize_case("0001")


def test_same_seed_same_volume(case_0001):
    image, label, affine = synthesize_case("0001")
    np.testing.assert_array_equal(image, case_0001[0])
    np.testing.assert_array_equal(label, case_0001[1])
    np.testing.assert_array_equal(affine, case_0001[2])


def test_cases_differ_from_each_other(case_0001):
    other = synthesize_case("0002")
    assert other[0].shape != case_0001[0].shape or not np.array_equal(other[1], case_0001[1])


def test_btcv_like_geometry(case_0001):
    image, label, affine = case_0001
    inplane, thickness = abs(affine[0, 0]), abs(affine[2, 2])
    assert inplane < 1.0 and 2.5 <= thickness <= 5.0
    assert image.dtype == np.int16 and label.dtype == np.uint8 and image.shape == label.shape


# Plausible adult volumes (mL), wide enough for the case-to-case variation.
VOLUME_RANGES = {
    "liver": (1000, 2300),
    "spleen": (80, 300),
    "right kidney": (80, 200),
    "left kidney": (80, 200),
    "gallbladder": (10, 60),
    "pancreas": (30, 120),
    "stomach": (150, 600),
    "right adrenal gland": (1.5, 10),
    "left adrenal gland": (1.5, 10),
}


@pytest.mark.parametrize("case_id", ["0001", "0035"])
def test_every_organ_present_with_plausible_volume(case_id):
    image, label, affine = synthesize_case(case_id)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for index, organ in enumerate(ORGANS, start=1):
        volume = (label == index).sum() * voxel_ml
        assert volume > 0.5, organ
        if organ in VOLUME_RANGES:
            lo, hi = VOLUME_RANGES[organ]
            assert lo <= volume <= hi, (organ, volume)


def test_soft_tissue_organs_overlap_in_intensity(case_0001):
    """Intensity alone cannot separate liver, spleen and pancreas: their HU ranges overlap."""
    image, label, _ = case_0001
    ranges = {}
    for organ in ("liver", "spleen", "pancreas"):
        values = image[label == ORGANS.index(organ) + 1].astype(float)
        ranges[organ] = (np.percentile(values, 10), np.percentile(values, 90))
    assert ranges["liver"][0] < ranges["spleen"][1] and ranges["spleen"][0] < ranges["liver"][1]
    assert ranges["pancreas"][0] < ranges["liver"][1] and ranges["liver"][0] < ranges["pancreas"][1]


def test_organs_sit_on_the_correct_side(case_0001):
    """Liver on the patient's right, spleen on the left, in NIfTI world coordinates (RAS+: +x = right)."""
    _, label, affine = case_0001

    def world_centroid(organ):
        ijk = np.argwhere(label == ORGANS.index(organ) + 1).mean(axis=0)
        return affine[:3, :3] @ ijk + affine[:3, 3]

    liver, spleen, aorta = world_centroid("liver"), world_centroid("spleen"), world_centroid("aorta")
    assert liver[0] > 20 > -20 > spleen[0]
    assert aorta[1] < world_centroid("stomach")[1] - 30  # aorta well posterior (+y = anterior)
    assert world_centroid("esophagus")[2] > world_centroid("right kidney")[2]


def test_written_dataset_is_readable_nifti(tiny_synthetic):
    img = nib.load(str(tiny_synthetic / "RawData" / "Training" / "img" / "img0001.nii.gz"))
    lab = nib.load(str(tiny_synthetic / "RawData" / "Training" / "label" / "label0001.nii.gz"))
    assert img.shape == lab.shape and np.allclose(img.affine, lab.affine)
    assert b"synthetic" in img.header["descrip"].tobytes()
    assert len(list((tiny_synthetic / "RawData" / "Training" / "img").glob("*.nii.gz"))) == 30


def test_cases_painted_in_parallel_are_the_same_files(tmp_path):
    from bench.data.synthetic import write_synthetic_dataset

    ids = ["0001", "0002", "0035"]
    serial = write_synthetic_dataset(tmp_path / "serial", ids, spacing_scale=6.0, workers=1)
    done = []
    parallel = write_synthetic_dataset(tmp_path / "parallel", ids, spacing_scale=6.0, progress=done.append, workers=2)
    assert sorted(done) == ids
    files = sorted(p.relative_to(serial) for p in serial.rglob("*.nii.gz"))
    assert len(files) == 6
    assert all((serial / f).read_bytes() == (parallel / f).read_bytes() for f in files)


@pytest.mark.slow
def test_processes_started_together_write_the_synthetic_data_once(tmp_path):
    from tests.conftest import calls_when_started_together

    args = (tmp_path / "synth", ["0001", "0002"], None, 8.0)  # no console: the progress bar takes rich's default
    # the first wrote, the other waited and found it written
    assert calls_when_started_together("bench.data.source", "write_synthetic_dataset", "ensure_synthetic", args, tmp_path / "calls") == 1
    assert len(list((tmp_path / "synth").glob("RawData/Training/img/*.nii.gz"))) == 2
