"""Real CT for the tests: TotalSegmentator's own regression references, from its source distribution
(``totalsegmentator==2.18.0``, Apache-2.0), which ``./install test`` fetches once into
``.reference-data/``. Three CTs with organ labels made by TotalSegmentator's models (not hand
annotations: good for checking the harness, not for accuracy claims), one of them a DICOM series
whose label is stored in another voxel order (LAS) than SimpleITK reads the series (LPS)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SDIST = Path(__file__).resolve().parents[1] / ".reference-data" / "totalsegmentator-2.18.0.tar.gz"
PREFIX = "totalsegmentator-2.18.0/"
REFERENCE_FILES = "tests/reference_files/"
# TotalSegmentator's values of BTCV's 13 organs, in BTCV's order (its class_map["total"]).
TOTALSEG_VALUES_IN_BTCV_ORDER = (1, 2, 3, 4, 15, 5, 6, 52, 63, 64, 7, 8, 9)
# The real dataset's cases: id -> (image, label), files of reference_files/.
CASES = {
    "0001": ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),  # 122x101x112, 3 mm
    "0002": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),  # 122x101x30, 3 mm ('total' model)
    "0003": ("example_ct_dicom", "example_seg_dicom.nii.gz"),  # 20 DICOM slices, 512x512, 0.98x0.98x2 mm
}


def extract_references(out: Path) -> Path:
    """The reference files and ``map_to_binary.py`` extracted under ``out``; skips the test where the
    source distribution is missing, and fails it under CI (BENCH_REQUIRE_REAL_CT=1)."""
    if not SDIST.is_file():
        message = f"{SDIST} is missing: ./install test fetches it"
        if os.environ.get("BENCH_REQUIRE_REAL_CT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    wanted = [f"{PREFIX}{REFERENCE_FILES}{name}" for pair in CASES.values() for name in pair]
    wanted += [f"{PREFIX}{REFERENCE_FILES}example_seg_fast.nii.gz", f"{PREFIX}totalsegmentator/map_to_binary.py"]
    with tarfile.open(SDIST) as tar:
        members = [m for m in tar.getmembers() if any(m.name == w or m.name.startswith(w + "/") for w in wanted)]
        tar.extractall(out, members=members, filter="data")
    return out / PREFIX


def totalseg_classes(root: Path) -> dict[int, str]:
    """``class_map["total"]`` of TotalSegmentator's ``map_to_binary.py``, read without importing it."""
    tree = ast.parse((root / "totalsegmentator" / "map_to_binary.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and getattr(node.targets[0], "id", "") == "class_map":
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if ast.literal_eval(key) == "total":
                    return ast.literal_eval(value)
    raise AssertionError("no class_map['total'] in map_to_binary.py")


def to_btcv(totalseg_label: np.ndarray) -> np.ndarray:
    """A TotalSegmentator label map in BTCV's 13 values (everything else background)."""
    table = np.zeros(256, dtype=np.uint8)
    for btcv_value, totalseg_value in enumerate(TOTALSEG_VALUES_IN_BTCV_ORDER, start=1):
        table[totalseg_value] = btcv_value
    return table[totalseg_label]


def build_dataset(root: Path, out: Path) -> Path:
    """A Decathlon-layout dataset of the three real CTs, labels in BTCV's values and names: images
    ``imagesTr/ts_000N_0000.nii.gz`` and, for the DICOM case, the series folder ``imagesTr/ts_0003/``;
    each label stored as TotalSegmentator wrote it (same affine, same voxel order)."""
    refs = root / REFERENCE_FILES
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    training = []
    for case_id, (image, label) in CASES.items():
        source = refs / image
        if source.is_dir():
            target = f"imagesTr/ts_{case_id}"
            shutil.copytree(source, out / target)
        else:
            target = f"imagesTr/ts_{case_id}_0000.nii.gz"
            shutil.copyfile(source, out / target)
        stored = nib.load(str(refs / label))
        btcv = to_btcv(np.asarray(stored.dataobj))
        nib.save(nib.Nifti1Image(btcv, stored.affine), str(out / "labelsTr" / f"ts_{case_id}.nii.gz"))
        training.append({"image": target, "label": f"labelsTr/ts_{case_id}.nii.gz"})
    from bench.data.labels import ORGANS

    labels = {"background": 0, **{organ: i + 1 for i, organ in enumerate(ORGANS)}}
    description = {"name": "TotalSegmentator's reference CTs (labels: its model outputs)", "labels": labels, "training": training}
    (out / "dataset.json").write_text(json.dumps(description, indent=2))
    return out
