"""The built-in synthetic abdomen written as a dataset (30 cases, one process per core), so that
every command runs end to end without BTCV: in BTCV's RawData layout with BTCV's ids and labels
(``btcv``, the default), or AMOS-like in the Decathlon layout with its own ids, 15 labels and
``dataset.json`` (``amos``, ``bench.data.amos``). It is not a substitute for either: numbers
measured on it say that the pipeline works and that a model learns, nothing about real anatomy;
everything derived from it is stamped ``synthetic``. The anatomy of one case is ``bench.data.abdomen``."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.data.abdomen import synthesize_case
from bench.data.amos import AMOS_IDS, TO_AMOS, amos_dataset_json, paint_amos_organs
from bench.data.labels import BTCV_LABELLED_IDS
from bench.io import atomic_write

SYNTHETIC_VERSION = 1
COMPLETE_MARKER = ".complete"


def synthesize_amos_case(case_id: str, spacing_scale: float = 1.0):
    """(HU image, label in AMOS's values, affine) of one AMOS-like case, deterministic in its id."""
    image, label, affine = synthesize_case(case_id, spacing_scale, paint_more=paint_amos_organs)
    return image, TO_AMOS[label], affine


@dataclass(frozen=True)
class SyntheticKind:
    """One built-in synthetic dataset: its case ids, how a case is painted, where its files go
    (relative to the root; ``{id}`` is the case id) and its dataset.json (None: the layout says all)."""

    ids: tuple[str, ...]
    synthesize: Callable
    image: str
    label: str
    dataset_json: Callable[[Iterable[str]], dict] | None = None
    # What a folder's completion marker records beyond version and voxel size: a folder written
    # otherwise (an older label naming) is another dataset, not silently this one.
    marker: dict = field(default_factory=dict)


SYNTHETIC_KINDS = {
    "btcv": SyntheticKind(
        BTCV_LABELLED_IDS, synthesize_case, "RawData/Training/img/img{id}.nii.gz", "RawData/Training/label/label{id}.nii.gz"
    ),
    "amos": SyntheticKind(
        AMOS_IDS,
        synthesize_amos_case,
        "imagesTr/amos_{id}.nii.gz",
        "labelsTr/amos_{id}.nii.gz",
        amos_dataset_json,
        {"dataset": "amos", "label_names": "amos"},  # label_names: AMOS's own ("postcava"), since issue 34
    ),
}


def _write_case(root: Path, case_id: str, spacing_scale: float, kind: str = "btcv") -> str:
    import nibabel as nib

    spec = SYNTHETIC_KINDS[kind]
    img_path, lab_path = root / spec.image.format(id=case_id), root / spec.label.format(id=case_id)
    if not (img_path.exists() and lab_path.exists()):
        image, label, affine = spec.synthesize(case_id, spacing_scale)
        for array, path in ((image, img_path), (label, lab_path)):
            nifti = nib.Nifti1Image(array, affine)
            nifti.header.set_xyzt_units("mm")
            nifti.header["descrip"] = b"bench synthetic abdomen (not BTCV)"
            # gzip level 1 as nibabel writes .nii.gz, mtime 0 so the same case is the same bytes
            data = gzip.compress(nifti.to_bytes(), compresslevel=1, mtime=0)
            atomic_write(path, lambda fh, data=data: fh.write(data))
    return case_id


def write_synthetic_dataset(
    out: Path,
    case_ids: Iterable[str],
    spacing_scale: float = 1.0,
    progress=None,
    workers: int | None = None,
    kind: str = "btcv",
) -> Path:
    """Write cases of the synthetic dataset ``kind`` (``SYNTHETIC_KINDS``) as NIfTI files under
    ``out`` (btcv: ``out/RawData/Training/{img,label}/``, returned; amos: ``imagesTr``/``labelsTr``
    and dataset.json under ``out``, returned).

    Each file is written to a temporary name then renamed, and a marker is written last, so that an
    interrupted run leaves either finished files or nothing, and a rerun completes what is missing.
    Cases are painted in ``workers`` processes (default: one per CPU core, at most 4); each case
    depends on its id only, so the files are the same bytes however many there are.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    root, spec = Path(out), SYNTHETIC_KINDS[kind]
    for template in (spec.image, spec.label):
        (root / template).parent.mkdir(parents=True, exist_ok=True)
    case_ids = list(case_ids)
    if spec.dataset_json is not None:
        (root / "dataset.json").write_text(json.dumps(spec.dataset_json(case_ids), indent=2) + "\n")
    written = root / Path(spec.image).parent.parent if spec.dataset_json is None else root
    workers = min(workers or os.cpu_count() or 1, 4, len(case_ids))
    if workers <= 1:
        for case_id in case_ids:
            _write_case(root, case_id, spacing_scale, kind)
            if progress is not None:
                progress(case_id)
        return written
    # spawn: the caller may hold threads (PyTorch's) that a forked child would inherit half-made
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_write_case, root, case_id, spacing_scale, kind) for case_id in case_ids]
        for future in as_completed(futures):
            case_id = future.result()
            if progress is not None:
                progress(case_id)
    return written
