"""Finding and validating a BTCV folder, in either of the layouts researchers keep it in.

Accepted layouts (ROOT is what ``--data-root`` or ``BENCH_DATA_ROOT`` points at):
- distributed: ``ROOT/RawData/Training/{img,label}/``, ``ROOT/Training/{img,label}/`` or
  ``ROOT/{img,label}/`` with ``img00XX.nii.gz`` and ``label00XX.nii.gz``;
- Decathlon: ``ROOT/imagesTr/`` + ``ROOT/labelsTr/``, file names carrying the case number
  (``img0001.nii.gz``, ``BTCV_001_0000.nii.gz``...); a ``dataset*.json`` with a ``training`` list of
  ``{"image", "label"}`` pairs takes precedence over the folder listing when present.

In every layout an image may also be a folder holding one DICOM series (``img/img0001/``,
``imagesTr/case_0001/``), named as the file would be (``bench.data.volumes``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.labels import BTCV_LABELS, LabelSet, how_alike
from bench.data.volumes import is_volume, onto_grid, orientation_codes, read_volume, volume_stem, voxel_size_mm
from bench.errors import DataError


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
    name: str = "BTCV"  # dataset.json's name where it gives one

    @property
    def source(self) -> str:
        return "synthetic" if self.synthetic else "btcv"

    @property
    def description(self) -> str:
        """What every table says about the data its numbers come from."""
        return "SYNTHETIC data (built-in abdomen, not BTCV)" if self.synthetic else f"{self.name} at {self.root}"


def _is_case_volume(path: Path) -> bool:
    return not path.name.startswith(".") and is_volume(path)


def case_id_from_name(name: str) -> str | None:
    """Four-digit case id from a file or series folder name: ``img0001.nii.gz``, ``BTCV_001_0000.nii.gz``
    and ``case_0001/`` give 0001."""
    stem = volume_stem(Path(name))
    # nnU-Net's channel suffix (BTCV_001_0000), not the case number itself (AMOS's amos_0001)
    stem = re.sub(r"(\d\D*)_\d{4}$", r"\1", stem)
    numbers = re.findall(r"\d+", stem)
    if not numbers:
        return None
    return f"{int(numbers[-1]):04d}"


def _pair_folders(image_dir: Path, label_dir: Path) -> dict[str, Case]:
    labels: dict[str, Path] = {}
    for path in sorted(label_dir.iterdir()):
        if _is_case_volume(path) and (cid := case_id_from_name(path.name)):
            labels[cid] = path
    cases: dict[str, Case] = {}
    for path in sorted(image_dir.iterdir()):
        if _is_case_volume(path) and (cid := case_id_from_name(path.name)):
            cases[cid] = Case(cid, path, labels.pop(cid, None))
    for cid, path in labels.items():  # a label without its image still shows up in the checks
        cases[cid] = Case(cid, image_dir / f"(missing image for {path.name})", path)
    return dict(sorted(cases.items()))


def _from_dataset_json(root: Path, json_path: Path) -> tuple[dict[str, Case], LabelSet, str]:
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
    labels = _label_set(description, json_path)
    name = str(description.get("name") or ("BTCV" if labels.is_btcv else "dataset"))
    return dict(sorted(cases.items())), labels, name


def _label_set(description: dict, json_path: Path) -> LabelSet:
    """The dataset.json's labels; BTCV's own when they name BTCV's 13 organs in BTCV's order under
    other spellings (MONAI's dataset_0.json: "rkid", "IVC", ...; ``how_alike``), so
    the tables keep Table 1's columns and the paper's rows."""
    labels = description.get("labels")
    if labels is None:
        return BTCV_LABELS
    if not isinstance(labels, dict):
        raise DataError(f"{json_path}: 'labels' must map names to values")
    found = labels_from_dataset_json(labels, str(json_path))
    same = len(found.organs) == len(BTCV_LABELS.organs) and all(
        how_alike(a, b) for a, b in zip(found.organs, BTCV_LABELS.organs, strict=True)
    )
    return BTCV_LABELS if same and found.ignore is None else found


def locate_dataset(root: Path | str, synthetic: bool = False) -> Dataset:
    """Find the labelled training cases under root in any accepted layout; DataError if none."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder")
    labels, name = BTCV_LABELS, "BTCV"
    for base in (root / "RawData" / "Training", root / "Training", root):
        if (base / "img").is_dir() and (base / "label").is_dir():
            cases = _pair_folders(base / "img", base / "label")
            layout = "btcv-rawdata"
            break
    else:
        if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
            json_files = sorted(root.glob("dataset*.json"))
            if json_files:
                (cases, labels, name), layout = _from_dataset_json(root, json_files[0]), "decathlon-json"
            else:
                cases, layout = _pair_folders(root / "imagesTr", root / "labelsTr"), "decathlon"
        else:
            raise DataError(
                f"no BTCV layout under {root}: expected RawData/Training/img + label, Training/img + label, "
                "img + label, or imagesTr + labelsTr"
            )
    if not cases:
        raise DataError(f"{root}: the {layout} layout was found but holds no cases (NIfTI files or DICOM series folders)")
    return Dataset(layout=layout, root=root, cases=cases, synthetic=synthetic, labels=labels, name=name)


def read_pair(case: Case, labels: LabelSet = BTCV_LABELS, notes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load (image, label on the image's voxel grid, image affine) and check that they belong
    together; DataError naming the file. A label stored in another axis order of the same grid is
    reordered onto the image's, with a line in ``notes``."""
    if case.label is None:
        raise DataError(f"case {case.case_id}: image {case.image} has no label file")
    volumes = []
    for path in (case.image, case.label):
        if not path.exists():
            raise DataError(f"case {case.case_id}: file {path} is missing")
        try:
            volumes.append(read_volume(path))
        except DataError as exc:
            raise DataError(f"case {case.case_id}: {exc}") from exc
    image, label = volumes
    aligned = label_on_image_grid(case, image.array.shape, image.affine, label.array, label.affine, notes)
    check_label_values(case, aligned, labels)
    return image.array, aligned, image.affine


def label_on_image_grid(
    case: Case, image_shape, image_affine, label: np.ndarray, label_affine, notes: list[str] | None = None
) -> np.ndarray:
    """The label on the image's grid: as stored, or reordered when it is the same grid in another
    axis order (a line in ``notes``); DataError when the grids differ otherwise."""
    aligned = onto_grid(label, label_affine, image_affine, image_shape)
    if aligned is None:
        raise DataError(
            f"case {case.case_id}: image and label grids differ (image {_grid_text(image_shape, image_affine)}, "
            f"label {_grid_text(label.shape, label_affine)}; {case.label})"
        )
    if aligned is not label and notes is not None:
        notes.append(
            f"case {case.case_id}: label stored {orientation_codes(label_affine)}, image {orientation_codes(image_affine)}: "
            "the same grid in another voxel order; the label is reordered onto the image's"
        )
    return aligned


def _grid_text(shape, affine) -> str:
    spacing = voxel_size_mm(affine)
    origin = np.asarray(affine)[:3, 3]
    return (
        f"{'x'.join(str(int(n)) for n in shape)} {orientation_codes(affine)}, {'x'.join(f'{z:.3g}' for z in spacing)} mm, "
        f"origin ({', '.join(f'{o:.1f}' for o in origin)})"
    )


def read_label(case: Case, labels: LabelSet = BTCV_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """The label array exactly as stored and its affine: what original-space scores compare against."""
    if case.label is None or not case.label.exists():
        raise DataError(f"case {case.case_id}: label file {case.label} is missing")
    try:
        label = read_volume(case.label)
    except DataError as exc:
        raise DataError(f"case {case.case_id}: {exc}") from exc
    check_label_values(case, label.array, labels)
    return np.rint(label.array).astype(labels.dtype), label.affine


def check_label_values(case: Case, label: np.ndarray, labels: LabelSet = BTCV_LABELS) -> None:
    values = np.unique(label)
    bad = [v for v in values.tolist() if v not in labels.file_values]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise DataError(
            f"case {case.case_id}: label values outside 0..{max(labels.file_values)} in {case.label}: {shown} (not in the dataset's labels)"
        )


def check_trainable(labels: LabelSet, where: str) -> None:
    """DataError when bench cannot train on or score a dataset's labels (sparse annotation)."""
    if labels.ignore is not None:
        raise DataError(
            f"{where} has an 'ignore' label ({labels.ignore}, unannotated voxels); bench checks such datasets "
            "but does not yet train on or score them"
        )


@dataclass
class DataCheck:
    """What ``check_dataset`` found: problems (the dataset cannot be used as it is) and notes (it
    can, and this is how)."""

    problems: list[str]
    notes: list[str]


def check_dataset(dataset: Dataset, expected_ids: Iterable[str] | None = None) -> DataCheck:
    """Every problem in the dataset, one line each, and what was adapted. With ``expected_ids`` (a
    protocol's cases) the ids must match too; without, every labelled case is checked."""
    problems: list[str] = []
    notes: list[str] = []
    if expected_ids is None:
        checked = list(dataset.cases)
    else:
        checked = list(expected_ids)
        problems += [
            f"case {cid}: required by the protocol but not found under {dataset.root}" for cid in checked if cid not in dataset.cases
        ]
        problems += [
            f"case {cid}: not a case of the protocol ({dataset.cases[cid].image.name}); no run uses it"
            for cid in dataset.cases
            if cid not in checked
        ]
    for cid in checked:
        if cid in dataset.cases:
            try:
                read_pair(dataset.cases[cid], dataset.labels, notes)
            except DataError as exc:
                problems.append(str(exc))
    return DataCheck(problems, notes)


def labels_from_dataset_json(labels: Mapping, where: str) -> LabelSet:
    """The label set of a ``dataset.json`` ``labels`` entry, nnU-Net v2's ``{"name": value}`` or the
    Decathlon's ``{"value": "name"}``, with nnU-Net's rules: background 0, the others 1..N without
    gaps, an ``ignore`` label (unannotated voxels) at N + 1. DataError naming ``where`` for two names
    of one value, a missing background, gaps, or region-based labels (a list of values per name),
    which bench does not train or score."""
    by_value: dict[int, str] = {}
    ignore = None
    for key, value in labels.items():
        name, number = (key, value) if isinstance(value, int | float | list | tuple) else (value, key)
        if isinstance(number, list | tuple):
            raise DataError(
                f"{where}: label {name!r} is a region ({list(number)}); region-based label sets are not supported, "
                "give each value its own name"
            )
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise DataError(f"{where}: label {name!r} has no whole-number value ({number!r})") from None
        if str(name) == "ignore":
            ignore = number
            continue
        if number in by_value:
            raise DataError(f"{where}: label value {number} has two names, {by_value[number]!r} and {name!r}")
        by_value[number] = str(name)
    if 0 not in by_value:
        raise DataError(f"{where}: no background label 0")
    values = sorted(by_value)
    if values != list(range(len(values))) or len(values) < 2:
        raise DataError(f"{where}: label values must be 0, 1, ..., N without gaps (as nnU-Net requires), got {values}")
    if ignore is not None and ignore != len(values):
        raise DataError(f"{where}: the ignore label must be the highest value, {len(values)} (as nnU-Net requires), got {ignore}")
    return LabelSet(tuple(by_value[v] for v in values[1:]), ignore=ignore)
