"""The built-in synthetic abdomen written as a dataset in BTCV's RawData layout (30 cases with BTCV's
ids, one process per core), so that every command runs end to end without BTCV. It is not a
substitute for BTCV: numbers measured on it say that the pipeline works and that a model learns,
nothing about real anatomy; everything derived from it is stamped ``synthetic``. The anatomy of one
case is ``bench.data.abdomen``."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

from bench.data.abdomen import synthesize_case
from bench.io import atomic_write

SYNTHETIC_VERSION = 1
COMPLETE_MARKER = ".complete"


def _write_case(training: Path, case_id: str, spacing_scale: float) -> str:
    import nibabel as nib

    img_path = training / "img" / f"img{case_id}.nii.gz"
    lab_path = training / "label" / f"label{case_id}.nii.gz"
    if not (img_path.exists() and lab_path.exists()):
        image, label, affine = synthesize_case(case_id, spacing_scale)
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
) -> Path:
    """Write cases as ``out/RawData/Training/{img,label}/...`` NIfTI files; returns the Training folder.

    Each file is written to a temporary name then renamed, and a marker is written last, so that an
    interrupted run leaves either finished files or nothing, and a rerun completes what is missing.
    Cases are painted in ``workers`` processes (default: one per CPU core, at most 4); each case
    depends on its id only, so the files are the same bytes however many there are.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    training = Path(out) / "RawData" / "Training"
    (training / "img").mkdir(parents=True, exist_ok=True)
    (training / "label").mkdir(parents=True, exist_ok=True)
    case_ids = list(case_ids)
    workers = min(workers or os.cpu_count() or 1, 4, len(case_ids))
    if workers <= 1:
        for case_id in case_ids:
            _write_case(training, case_id, spacing_scale)
            if progress is not None:
                progress(case_id)
        return training
    # spawn: the caller may hold threads (PyTorch's) that a forked child would inherit half-made
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_write_case, training, case_id, spacing_scale) for case_id in case_ids]
        for future in as_completed(futures):
            case_id = future.result()
            if progress is not None:
                progress(case_id)
    return training
