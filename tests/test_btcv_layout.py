from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from bench.data.btcv import DataCheck, case_id_from_name, check_dataset, locate_dataset, read_pair
from bench.data.labels import BTCV_LABELLED_IDS
from bench.errors import DataError
from tests.conftest import write_nifti

SHAPE = (6, 5, 4)


def make_case(image_path, label_path, label=None, shape=SHAPE, affine=None):
    write_nifti(image_path, np.zeros(shape, np.int16), affine)
    write_nifti(label_path, np.zeros(shape, np.uint8) if label is None else label, affine)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("img0001.nii.gz", "0001"),
        ("label0040.nii", "0040"),
        ("BTCV_001_0000.nii.gz", "0001"),
        ("BTCV_035.nii.gz", "0035"),
        ("x.nii.gz", None),
    ],
)
def test_case_id_from_name(name, expected):
    assert case_id_from_name(name) == expected


@pytest.mark.parametrize("prefix", ["RawData/Training", "Training", ""])
def test_distributed_layouts(tmp_path, prefix):
    base = tmp_path / prefix if prefix else tmp_path
    make_case(base / "img" / "img0001.nii.gz", base / "label" / "label0001.nii.gz")
    dataset = locate_dataset(tmp_path)
    assert dataset.layout == "btcv-rawdata" and list(dataset.cases) == ["0001"]


def test_decathlon_layout_with_and_without_json(tmp_path):
    make_case(tmp_path / "imagesTr" / "img0002.nii.gz", tmp_path / "labelsTr" / "label0002.nii.gz")
    assert locate_dataset(tmp_path).layout == "decathlon"
    (tmp_path / "dataset_0.json").write_text(
        json.dumps({"training": [{"image": "imagesTr/img0002.nii.gz", "label": "labelsTr/label0002.nii.gz"}]})
    )
    dataset = locate_dataset(tmp_path)
    assert dataset.layout == "decathlon-json" and dataset.cases["0002"].label.name == "label0002.nii.gz"


def test_empty_or_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no BTCV layout"):
        locate_dataset(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        locate_dataset(tmp_path / "nope")
    (tmp_path / "img").mkdir()
    (tmp_path / "label").mkdir()
    with pytest.raises(DataError, match="holds no cases"):
        locate_dataset(tmp_path)


def test_check_reports_each_problem_with_its_file(tmp_path):
    base = tmp_path / "RawData" / "Training"
    ids = ["0001", "0002", "0003", "0004", "0005"]
    make_case(base / "img" / "img0001.nii.gz", base / "label" / "label0001.nii.gz")  # fine
    make_case(base / "img" / "img0002.nii.gz", base / "label" / "label0002.nii.gz", label=np.full(SHAPE, 14, np.uint8))
    make_case(base / "img" / "img0003.nii.gz", base / "label" / "label0003.nii.gz")
    write_nifti(base / "label" / "label0003.nii.gz", np.zeros((6, 5, 3), np.uint8))  # shape mismatch
    make_case(base / "img" / "img0004.nii.gz", base / "label" / "label0004.nii.gz")
    (base / "img" / "img0004.nii.gz").write_bytes(gzip.compress(b"not a nifti at all"))  # corrupt
    write_nifti(base / "img" / "img0005.nii.gz", np.zeros(SHAPE, np.int16))  # no label
    make_case(base / "img" / "img0099.nii.gz", base / "label" / "label0099.nii.gz")  # not in the splits
    problems = check_dataset(locate_dataset(tmp_path), ids + ["0006"]).problems
    text = "\n".join(problems)
    assert "label values outside 0..13 in" in text and "label0002.nii.gz" in text
    assert "grids differ (image 6x5x4 RAS, 1x1x1 mm" in text and "label 6x5x3 RAS" in text
    assert "cannot read" in text and "img0004.nii.gz" in text
    assert "case 0005: image" in text and "has no label" in text
    assert "case 0006: required by the protocol but not found" in text
    assert "case 0099: not a case of the protocol" in text
    assert not any(p.startswith("case 0001") for p in problems)
    assert len(problems) == 6


def test_affine_mismatch_is_reported(tmp_path):
    base = tmp_path / "Training"
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    write_nifti(base / "img" / "img0001.nii.gz", np.zeros(SHAPE, np.int16))
    write_nifti(base / "label" / "label0001.nii.gz", np.zeros(SHAPE, np.uint8), shifted)
    with pytest.raises(
        DataError, match=r"grids differ \(image 6x5x4 RAS, 1x1x1 mm, origin \(0.0, 0.0, 0.0\), label 6x5x4 RAS, 1x1x1 mm, origin \(5.0"
    ):
        read_pair(locate_dataset(tmp_path).cases["0001"])


def test_the_synthetic_abdomen_passes_the_checks(tiny_synthetic):
    dataset = locate_dataset(tiny_synthetic)
    assert check_dataset(dataset, BTCV_LABELLED_IDS) == check_dataset(dataset) == DataCheck([], [])


def test_data_identity_follows_file_contents_not_places(tmp_path):
    import shutil

    from bench.data.btcv import Case, Dataset
    from bench.data.source import data_identity

    def dataset_at(root):
        cases = {}
        for cid in ("0001", "0002"):
            cases[cid] = Case(cid, root / f"img{cid}.nii.gz", root / f"label{cid}.nii.gz")
        return Dataset("distributed", root, cases)

    first = tmp_path / "a"
    first.mkdir()
    for name in ("img0001", "label0001", "img0002", "label0002"):
        (first / f"{name}.nii.gz").write_bytes(name.encode() * 100)
    identity = data_identity(dataset_at(first), ["0001", "0002"])
    moved = tmp_path / "b"
    shutil.copytree(first, moved)
    assert data_identity(dataset_at(moved), ["0001", "0002"]) == identity  # same bytes elsewhere: same data
    (moved / "label0002.nii.gz").write_bytes(b"LABEL0002" * 100)  # same size, other content
    assert data_identity(dataset_at(moved), ["0001", "0002"]) != identity
    assert data_identity(dataset_at(first), ["0001", "0002"]) == identity  # the untouched copy, answered from the cache


@pytest.mark.parametrize(
    ("name", "case"),
    [("img0001.nii.gz", "0001"), ("BTCV_001_0000.nii.gz", "0001"), ("amos_0501.nii.gz", "0501"), ("amos_0501_0000.nii.gz", "0501")],
)
def test_case_ids_from_every_naming_including_amos(name, case):
    """nnU-Net's channel suffix goes, a case number written like one (AMOS's amos_0001) stays."""
    from bench.data.btcv import case_id_from_name

    assert case_id_from_name(name) == case
