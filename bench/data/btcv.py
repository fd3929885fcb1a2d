"""Finding and validating a BTCV folder, in either of the layouts researchers keep it in.

Accepted layouts (ROOT is what ``--data-root`` or ``BENCH_DATA_ROOT`` points at):
- distributed: ``ROOT/RawData/Training/{img,label}/``, ``ROOT/Training/{img,label}/`` or
  ``ROOT/{img,label}/`` with ``img00XX.nii.gz`` and ``label00XX.nii.gz``;
- Decathlon: ``ROOT/imagesTr/`` + ``ROOT/labelsTr/``, file names carrying the case number
  (``img0001.nii.gz``, ``BTCV_001_0000.nii.gz``...); a ``dataset*.json`` with a ``training`` list of
  ``{"image", "label"}`` pairs takes precedence over the folder listing when present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.labels import BTCV_LABELS, LabelSet
from bench.errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# The 30 labelled BTCV training cases.
BTCV_LABELLED_IDS: tuple[str, ...] = tuple(f"{i:04d}" for i in [*range(1, 11), *range(21, 41)])


@dataclass(frozen=True)
class Case:
    case_id: str
    image: Path
    label: Path | None


@dataclass(frozen=True)
class Dataset:
    """A located dataset: its layout, root folder and cases by id."""

    layout: str
    root: Path
    cases: dict[str, Case]
    synthetic: bool = False
    labels: LabelSet = BTCV_LABELS  # from dataset.json where it names them

    @property
    def source(self) -> str:
        return "synthetic" if self.synthetic else "btcv"


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES)


def case_id_from_name(name: str) -> str | None:
    """Four-digit case id from a file name: ``img0001.nii.gz`` and ``BTCV_001_0000.nii.gz`` give 0001."""
    stem = name
    for suffix in NIFTI_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    # nnU-Net's channel suffix (BTCV_001_0000), not the case number itself (AMOS's amos_0001)
    stem = re.sub(r"(\d\D*)_\d{4}$", r"\1", stem)
    numbers = re.findall(r"\d+", stem)
    if not numbers:
        return None
    return f"{int(numbers[-1]):04d}"


def _pair_folders(image_dir: Path, label_dir: Path) -> dict[str, Case]:
    labels: dict[str, Path] = {}
    for path in sorted(label_dir.iterdir()):
        if _is_nifti(path) and (cid := case_id_from_name(path.name)):
            labels[cid] = path
    cases: dict[str, Case] = {}
    for path in sorted(image_dir.iterdir()):
        if _is_nifti(path) and (cid := case_id_from_name(path.name)):
            cases[cid] = Case(cid, path, labels.pop(cid, None))
    for cid, path in labels.items():  # a label without its image still shows up in the checks
        cases[cid] = Case(cid, image_dir / f"(missing image for {path.name})", path)
    return dict(sorted(cases.items()))


def _from_dataset_json(root: Path, json_path: Path) -> tuple[dict[str, Case], LabelSet]:
    try:
        description = json.loads(json_path.read_text())
        entries = description["training"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{json_path}: not a readable dataset json with a 'training' list ({exc})") from exc
    cases: dict[str, Case] = {}
    for entry in entries:
        try:
            image, label = root / entry["image"], root / entry["label"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"{json_path}: training entry {entry!r} lacks 'image' or 'label'") from exc
        cid = case_id_from_name(image.name)
        if cid is None:
            raise DataError(f"{json_path}: no case number in image name {image.name!r}")
        cases[cid] = Case(cid, image, label)
    return dict(sorted(cases.items())), _label_set(description, json_path)


def _label_set(description: dict, json_path: Path) -> LabelSet:
    """The dataset.json's labels; BTCV's own names when it is BTCV under its short names (MONAI's
    dataset_0.json: "rk", "IVC", ...): same values, so the tables keep Table 1's columns."""
    labels = description.get("labels")
    if labels is None:
        return BTCV_LABELS
    if not isinstance(labels, dict):
        raise DataError(f"{json_path}: 'labels' must map names to values")
    found = labels_from_dataset_json(labels, str(json_path))
    named_btcv = "btcv" in f"{description.get('name', '')} {description.get('description', '')}".lower()
    return BTCV_LABELS if named_btcv and len(found.organs) == len(BTCV_LABELS.organs) else found


def locate_dataset(root: Path | str, synthetic: bool = False) -> Dataset:
    """Find the labelled training cases under root in any accepted layout; DataError if none."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder")
    labels = BTCV_LABELS
    for base in (root / "RawData" / "Training", root / "Training", root):
        if (base / "img").is_dir() and (base / "label").is_dir():
            cases = _pair_folders(base / "img", base / "label")
            layout = "btcv-rawdata"
            break
    else:
        if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
            json_files = sorted(root.glob("dataset*.json"))
            if json_files:
                (cases, labels), layout = _from_dataset_json(root, json_files[0]), "decathlon-json"
            else:
                cases, layout = _pair_folders(root / "imagesTr", root / "labelsTr"), "decathlon"
        else:
            raise DataError(
                f"no BTCV layout under {root}: expected RawData/Training/img + label, Training/img + label, "
                "img + label, or imagesTr + labelsTr"
            )
    if not cases:
        raise DataError(f"{root}: the {layout} layout was found but holds no NIfTI cases")
    return Dataset(layout=layout, root=root, cases=cases, synthetic=synthetic, labels=labels)


def read_pair(case: Case, labels: LabelSet = BTCV_LABELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load (image, label, affine) and check that they belong together; DataError naming the file."""
    import nibabel as nib

    if case.label is None:
        raise DataError(f"case {case.case_id}: image {case.image} has no label file")
    arrays = []
    affines = []
    for path in (case.image, case.label):
        if not path.is_file():
            raise DataError(f"case {case.case_id}: file {path} is missing")
        try:
            nifti = nib.load(str(path))
            arrays.append(np.asanyarray(nifti.dataobj))
            affines.append(nifti.affine)
        except Exception as exc:  # nibabel raises many types for truncated/corrupt files
            raise DataError(f"case {case.case_id}: cannot read {path} ({type(exc).__name__}: {exc})") from exc
    image, label = arrays
    check_pair(case, image.shape, label.shape, affines[0], affines[1])
    check_label_values(case, label, labels)
    return image, label, affines[0]


def read_grid(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(shape, voxel size in mm) from a NIfTI header, without reading the voxels."""
    import nibabel as nib

    header = nib.load(str(path)).header
    return tuple(int(n) for n in header.get_data_shape()[:3]), tuple(float(z) for z in header.get_zooms()[:3])


def read_label(case: Case, labels: LabelSet = BTCV_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """The label array exactly as stored and its affine: what original-space scores compare against."""
    import nibabel as nib

    if case.label is None or not case.label.is_file():
        raise DataError(f"case {case.case_id}: label file {case.label} is missing")
    try:
        nifti = nib.load(str(case.label))
        label = np.asanyarray(nifti.dataobj)
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"case {case.case_id}: cannot read {case.label} ({type(exc).__name__}: {exc})") from exc
    check_label_values(case, label, labels)
    return np.rint(label).astype(np.uint8), np.asarray(nifti.affine, dtype=np.float64)


def check_pair(case: Case, image_shape, label_shape, image_affine, label_affine) -> None:
    if tuple(image_shape) != tuple(label_shape):
        raise DataError(f"case {case.case_id}: image shape {tuple(image_shape)} != label shape {tuple(label_shape)} ({case.label})")
    if not np.allclose(image_affine, label_affine, atol=1e-3):
        raise DataError(f"case {case.case_id}: image and label affines differ ({case.label})")


def check_label_values(case: Case, label: np.ndarray, labels: LabelSet = BTCV_LABELS) -> None:
    values = np.unique(label)
    bad = [v for v in values.tolist() if v not in labels.values]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise DataError(
            f"case {case.case_id}: label values outside 0..{labels.num_classes - 1} in {case.label}: {shown} (not in the dataset's labels)"
        )


def check_dataset(dataset: Dataset, expected_ids: Iterable[str]) -> list[str]:
    """Every problem in the dataset, one line each; empty when it is usable."""
    expected = list(expected_ids)
    problems = [f"case {cid}: required by the protocol but not found under {dataset.root}" for cid in expected if cid not in dataset.cases]
    problems += [
        f"case {cid}: not a case of the protocol ({dataset.cases[cid].image.name}); no run uses it"
        for cid in dataset.cases
        if cid not in expected
    ]
    for cid in expected:
        if cid in dataset.cases:
            try:
                read_pair(dataset.cases[cid], dataset.labels)
            except DataError as exc:
                problems.append(str(exc))
    return problems


def labels_from_dataset_json(labels: Mapping, where: str) -> LabelSet:
    """The label set of a ``dataset.json`` ``labels`` entry, nnU-Net v2's ``{"name": value}`` or the
    Decathlon's ``{"value": "name"}``. DataError naming ``where`` for two names of one value, a
    missing background 0 or values that are not 1..N."""
    by_value: dict[int, str] = {}
    for key, value in labels.items():
        name, number = (key, value) if isinstance(value, int | float) else (value, key)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise DataError(f"{where}: label {name!r} has no whole-number value ({number!r})") from None
        if number in by_value:
            raise DataError(f"{where}: label value {number} has two names, {by_value[number]!r} and {name!r}")
        by_value[number] = str(name)
    if 0 not in by_value:
        raise DataError(f"{where}: no background label 0")
    values = sorted(by_value)
    if values != list(range(len(values))) or len(values) < 2:
        raise DataError(f"{where}: label values must be 0, 1, ..., N without gaps (as nnU-Net requires), got {values}")
    organs = tuple(by_value[v] for v in values[1:])
    columns = LabelSet(organs).columns
    if len(set(columns)) != len(columns):
        raise DataError(f"{where}: two organs shorten to one table column ({', '.join(columns)}); give them more different names")
    return LabelSet(organs)
