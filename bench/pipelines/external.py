"""``bench score``: a folder of label maps made anywhere (the authors' released outputs, another
codebase, ``bench run --save-predictions``) scored with the same metric code as trained runs, in
the original label space, and written as a finished run folder that ``bench report`` shows beside
them."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.console import plain
from bench.data.btcv import NIFTI_SUFFIXES, Dataset, case_id_from_name
from bench.data.labels import LABEL_VALUES
from bench.data.source import data_identity, resolve_dataset
from bench.errors import UserError
from bench.evaluation.evaluate import Reference, check_scoring_options, reference_of
from bench.evaluation.metrics import METRIC_CONVENTION, score_case
from bench.io import sha256_file
from bench.provenance import code_revision, hardware, package_versions
from bench.runs.files import CONFIG_FILE, SUMMARY_FILE, CaseScores, ConfigFile, Provenance, RunConfig, config_hash_in, run_dir
from bench.runs.results import summarize, write_results_csv
from splits import FRACTIONS

EXTERNAL_FAMILY = "external predictions"


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


def read_prediction(path: Path, reference: Reference) -> np.ndarray:
    """The label map in ``path``; UserError naming the file when it cannot stand beside the reference."""
    import nibabel as nib

    try:
        nifti = nib.load(str(path))
        labels = np.asanyarray(nifti.dataobj)
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    if labels.shape != reference.label.shape:
        raise UserError(f"{path}: shape {labels.shape} does not match its label file's {reference.label.shape}")
    if not np.allclose(nifti.affine, reference.affine, atol=1e-3):
        raise UserError(f"{path}: its affine does not match its label file's (resample it onto the label's grid first)")
    values = np.unique(labels)
    bad = [v for v in values.tolist() if v not in LABEL_VALUES]
    if bad:
        raise UserError(f"{path}: label values outside 0..13: {', '.join(f'{v:g}' for v in bad[:5])}")
    return labels.astype(np.uint8)


def _stamp(pred_dir: Path, dataset: Dataset) -> str:
    data = "SYNTHETIC data (built-in abdomen, not BTCV)" if dataset.synthetic else f"BTCV at {dataset.root}"
    return f"{data}; external predictions from {pred_dir}"


def score_predictions(
    pred_dir: Path,
    method: str,
    data: str,
    repeat: int,
    out: Path,
    console: Console,
    data_root: Path | None = None,
    nsd_tolerance_mm: float = 1.0,
) -> Path:
    """Score ``pred_dir`` against the test labels and write runs/<data>/<method>/repeat<k>/; returns that folder."""
    from splits import load_splits

    if data not in FRACTIONS:
        raise UserError(f"unknown data fraction {data!r}; choose one of {', '.join(FRACTIONS)}")
    if not method or any(ch in method for ch in "/\\") or method.startswith("."):
        raise UserError(f"--method {method!r} cannot name a folder; use a label such as tpmamba-official")
    splits = load_splits()
    draws = splits.train[data]
    if not 0 <= repeat < len(draws):
        raise UserError(f"--repeat must be between 0 and {len(draws) - 1} for {data}, got {repeat}")
    check_scoring_options("original", nsd_tolerance_mm)
    test_ids = list(splits.test)
    files = find_predictions(Path(pred_dir), test_ids)
    dataset = resolve_dataset(data_root, splits.all_ids(), console)
    missing = [c for c in test_ids if c not in dataset.cases]
    if missing:
        raise UserError(f"test case {missing[0]} has no label under {dataset.root}")

    identity = "sha256:" + sha256_file_list([files[c] for c in test_ids])
    config = RunConfig(
        method=method,
        base_method=method,
        method_revision=0,
        family=EXTERNAL_FAMILY,
        hyperparameters={"predictions": str(Path(pred_dir).resolve())},
        data=data,
        repeat=repeat,
        train_cases=list(draws[repeat]),
        test_cases=test_ids,
        profile={},
        preprocess_key="none",
        data_identity=data_identity(dataset, splits.all_ids()),
        device="none",
        processes=1,
        seed=0,
        weights=f"{EXTERNAL_FAMILY} ({pred_dir})",
        weights_identity=identity,
        eval_space="original",
        nsd_tolerance_mm=float(nsd_tolerance_mm),
    )
    folder = run_dir(out, data, method, repeat)
    if (folder / CONFIG_FILE).exists() and config_hash_in(folder) != config.hash():
        raise UserError(f"{folder} holds another run (other predictions or settings); use another --method, --repeat or --out")

    scores = []
    for case_id in test_ids:
        reference = reference_of(dataset, case_id)
        prediction = read_prediction(files[case_id], reference)
        scores.append(CaseScores(case_id, score_case(prediction, reference.label, reference.spacing_mm, nsd_tolerance_mm)))
        console.print(f"scored {plain(files[case_id].name)}", highlight=False)

    stamp = _stamp(Path(pred_dir), dataset)
    provenance = Provenance(
        data_source=dataset.source,
        data_root=str(dataset.root),
        data_layout=dataset.layout,
        synthetic=dataset.synthetic,
        profile="external",
        device="cpu",
        hardware=hardware("cpu"),
        versions=package_versions(),
        code_revision=code_revision(),
        preprocess_cache=None,
        sam_weights=None,
        stamp=stamp,
    )
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ConfigFile(config, config.hash(), 0, 0, provenance, created).write(folder / CONFIG_FILE)
    summary = summarize(
        scores,
        method=method,
        data=data,
        repeat=repeat,
        config_hash=config.hash(),
        stamp=stamp,
        synthetic=dataset.synthetic,
        profile="external",
        weights=config.weights,
        spacing_mm=None,  # no preprocessed grid: the predictions come on the label files' own
        eval_space="original",
        metric_convention=METRIC_CONVENTION,
        nsd_tolerance_mm=float(nsd_tolerance_mm),
        train_cases=list(draws[repeat]),
        seconds={},
    )
    summary.write(folder / SUMMARY_FILE)
    write_results_csv(out)
    return folder


def sha256_file_list(paths: list[Path]) -> str:
    """One hash over several files' contents, in the given order."""
    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()[:16]
