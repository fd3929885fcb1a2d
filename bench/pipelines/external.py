"""``bench score``: a folder of label maps made anywhere (the authors' released outputs, another
codebase, ``bench run --save-predictions``) scored with the same metric code as trained runs, in
the original label space, and written as a finished run folder that ``bench report`` shows beside
them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.console import plain
from bench.data.btcv import Dataset, case_id_from_name, check_trainable
from bench.data.label_match import LabelMatch
from bench.data.labels import BTCV_LABELS, LabelSet
from bench.data.source import data_identity, resolve_dataset
from bench.data.volumes import NIFTI_SUFFIXES, onto_grid, orientation_codes, read_volume
from bench.errors import DataError, UserError
from bench.evaluation.evaluate import check_scoring_options, reference_of
from bench.evaluation.predictions import CasePrediction, Reference
from bench.io import sha256_file
from bench.pipelines.lifecycle import execute_run
from bench.plan.records import make_provenance
from bench.plan.runs import PlannedRun, RunJob, configure
from bench.runs.files import run_dir
from bench.runs.protocol import check_folder, claim_folder
from splits import DEFAULT_PROTOCOL, load_protocol

EXTERNAL_FAMILY = "external predictions"
EXTERNAL_PROFILE = "external"  # in the summary's and provenance's profile field: no profile made these


def find_predictions(pred_dir: Path, case_ids: list[str]) -> dict[str, Path]:
    """Test case id -> its prediction file, named by case id in BTCV's (``label0035.nii.gz``,
    ``img0035.nii.gz``) or the Decathlon's (``BTCV_0035.nii.gz``) naming."""
    if not pred_dir.is_dir():
        raise UserError(f"prediction folder {pred_dir} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(pred_dir.iterdir()):
        if not (path.is_file() and path.name.endswith(NIFTI_SUFFIXES)):
            continue
        case_id = case_id_from_name(path.name)
        if case_id in case_ids:
            if case_id in found:
                raise UserError(f"two predictions for case {case_id} in {pred_dir}: {found[case_id].name} and {path.name}")
            found[case_id] = path
    missing = [c for c in case_ids if c not in found]
    if missing:
        raise UserError(
            f"no prediction for test case {missing[0]} in {pred_dir} (expected e.g. label{missing[0]}.nii.gz; {len(missing)} missing)"
        )
    return found


def read_prediction(path: Path, reference: Reference, label_set: LabelSet = BTCV_LABELS, notes: list[str] | None = None) -> np.ndarray:
    """The label map in ``path`` on its reference's grid; UserError naming the file when it cannot
    stand beside the reference or holds a value ``label_set`` does not name. A map on the same grid
    in another voxel order (written on the image's grid, the label stored otherwise) is reordered,
    with a line in ``notes``."""
    try:
        volume = read_volume(path)
    except DataError as exc:
        raise UserError(str(exc)) from None
    labels = onto_grid(volume.array, volume.affine, reference.affine, reference.label.shape)
    if labels is None:
        if volume.array.shape != reference.label.shape:
            raise UserError(f"{path}: shape {volume.array.shape} does not match its label file's {reference.label.shape}")
        raise UserError(f"{path}: its affine does not match its label file's (resample it onto the label's grid first)")
    if labels is not volume.array and notes is not None:
        notes.append(
            f"{path.name}: stored {orientation_codes(volume.affine)}, its label file {orientation_codes(reference.affine)}: "
            "the same grid in another voxel order; reordered onto the label's"
        )
    values = np.unique(labels)
    bad = [v for v in values.tolist() if v not in label_set.values]
    if bad:
        raise UserError(f"{path}: label values outside 0..{label_set.num_classes - 1}: {', '.join(f'{v:g}' for v in bad[:5])}")
    return labels.astype(label_set.dtype)


def _stamp(pred_dir: Path, dataset: Dataset) -> str:
    return f"{dataset.description}; external predictions from {pred_dir}"


@dataclass
class ExternalRun:
    """Predictions already made: nothing to build or train; each test case's label map, read and
    checked when the run was opened, so a bad file stops it before anything is written."""

    labels: dict[str, tuple[np.ndarray, Reference]]
    network: None = None
    facts: None = None
    spacing_mm: None = None  # the predictions come on the label files' own grids

    def train(self) -> None:
        """Nothing to train."""

    def predictions(self) -> Iterator[CasePrediction]:
        for case_id, (labels, reference) in self.labels.items():
            yield CasePrediction(case_id, labels, reference.label, reference.spacing_mm, reference)

    def finish(self) -> None:
        """Nothing to keep."""


@dataclass
class ExternalPredictions:
    """What ``bench score`` opens instead of a pipeline: label maps from ``files`` (case id -> NIfTI file)."""

    files: dict[str, Path]
    dataset: Dataset
    match: LabelMatch | None = None  # predictions in another label set, matched by organ name

    def open(self, test_ids, console: Console) -> ExternalRun:
        labels = {}
        for case_id in test_ids:
            reference = reference_of(self.dataset, case_id)
            notes: list[str] = []
            if self.match is None:
                prediction = read_prediction(self.files[case_id], reference, self.dataset.labels, notes)
            else:
                prediction = self.match.lookup()[read_prediction(self.files[case_id], reference, self.match.source, notes)]
            labels[case_id] = (prediction, reference)
            console.print(f"read {plain(self.files[case_id].name)}", highlight=False)
            for line in notes:
                console.print(f"note: {plain(line)}", highlight=False, soft_wrap=True)
        return ExternalRun(labels)


def score_predictions(
    pred_dir: Path,
    method: str,
    data: str,
    repeat: int,
    out: Path,
    console: Console,
    data_root: Path | None = None,
    nsd_tolerance_mm: float = 1.0,
    protocol_spec: str = DEFAULT_PROTOCOL,
    prediction_labels: LabelSet | None = None,
    mapping: dict[str, str | None] | None = None,
) -> Path:
    """Score ``pred_dir`` against the test labels of draw ``repeat`` of ``data`` under the protocol
    and write runs/<data>/<method>/repeat<k>/; returns that folder. ``prediction_labels``: the label
    set the predictions are in when it is not the dataset's; organs are then matched by meaning,
    ``mapping`` (a mapping file's entries) first, and only the organs matched are scored
    (``LabelMatch``); the pairs are printed with how each was matched."""
    protocol = load_protocol(protocol_spec)
    draws = protocol.check_fraction(data)
    if not method or any(ch in method for ch in "/\\") or method.startswith("."):
        raise UserError(f"--method {method!r} cannot name a folder; use a label such as tpmamba-official")
    if not 0 <= repeat < len(draws):
        raise UserError(f"--repeat must be between 0 and {len(draws) - 1} for {data}, got {repeat}")
    check_scoring_options("original", nsd_tolerance_mm)
    test_ids = list(draws[repeat].test)
    files = find_predictions(Path(pred_dir), test_ids)
    dataset = resolve_dataset(data_root, protocol.all_ids(), console)
    missing = [c for c in test_ids if c not in dataset.cases]
    if missing:
        raise UserError(f"test case {missing[0]} has no label under {dataset.root}")
    check_trainable(dataset.labels, str(dataset.root))
    match = None if prediction_labels is None else LabelMatch(prediction_labels, dataset.labels, tuple((mapping or {}).items()))
    scored = protocol.organs
    if match is not None:
        try:
            pairs = match.pairs
        except DataError as exc:
            raise UserError(str(exc)) from None
        if not pairs:
            raise UserError(
                f"the predictions' labels and {dataset.root}'s name no organ alike; nothing to score (--label-map FILE settles names)"
            )
        scored = tuple(o for o in (protocol.organs or match.matched) if o in match.matched)
        print_pairs(match, console)
    identity = "sha256:" + sha256_file_list([files[c] for c in test_ids])
    run = PlannedRun(method, data, repeat, draws[repeat].train, tuple(test_ids), run_dir(out, data, method, repeat), base_method=method)
    run.scored = scored
    check_folder(Path(out), protocol)
    configure(
        run,
        protocol,
        dataset.labels,
        base_method=method,
        method_revision=0,
        family=EXTERNAL_FAMILY,
        hyperparameters={
            "predictions": str(Path(pred_dir).resolve()),
            **({"prediction_labels": list(match.source.organs)} if match else {}),
            **({"organs_matched": {p.target: p.source for p in match.pairs}} if match else {}),
        },
        profile={},
        preprocess_key="none",
        data_identity=data_identity(dataset, protocol.all_ids()),
        device="none",
        processes=1,
        seed=0,
        weights=f"{EXTERNAL_FAMILY} ({pred_dir})",
        weights_identity=identity,
        eval_space="original",
        nsd_tolerance_mm=float(nsd_tolerance_mm),
    )
    claim_folder(Path(out), protocol)
    provenance = make_provenance(dataset, profile=EXTERNAL_PROFILE, device="cpu", stamp=_stamp(Path(pred_dir), dataset))
    predictions = ExternalPredictions(files, dataset, match)
    execute_run(run, lambda: predictions.open(run.test_ids, console), RunJob(provenance, EXTERNAL_PROFILE, Path(out)), console)
    return run.run_dir


def print_pairs(match: LabelMatch, console: Console) -> None:
    """The organs matched, each with how, then what was left out on either side."""
    from rich.table import Table

    table = Table(title=f"{len(match.pairs)} organs matched by name", title_justify="left")
    for column in ("prediction label", "value", "dataset label", "value", "how"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for pair in match.pairs:
        source_value, target_value = match.source.organs.index(pair.source) + 1, match.target.organs.index(pair.target) + 1
        table.add_row(plain(pair.source), str(source_value), plain(pair.target), str(target_value), pair.how)
    console.print(table)
    if match.skipped:
        console.print(f"skipped, not in the predictions' labels: {', '.join(match.skipped)}", highlight=False, soft_wrap=True)
    if match.unused:
        console.print(
            f"{len(match.unused)} predicted organs the reference does not label (counted as background): {', '.join(match.unused)}",
            highlight=False,
            soft_wrap=True,
        )


def sha256_file_list(paths: list[Path]) -> str:
    """One hash over several files' contents, in the given order."""
    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()[:16]
