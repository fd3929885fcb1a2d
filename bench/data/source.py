"""Where a run's data comes from: a BTCV folder the user points at, or the built-in synthetic
abdomen written once to the cache; and the identity of that data for the config hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rich.console import Console

from bench.console import progress_bar
from bench.data.btcv import Dataset, locate_dataset
from bench.data.synthetic import COMPLETE_MARKER, SYNTHETIC_KINDS, SYNTHETIC_VERSION, write_synthetic_dataset
from bench.data.volumes import content_sha256
from bench.errors import UserError
from bench.io import locked, read_json, sha256_file, write_json

# Content hashes of dataset files, keyed by path, size and modification time: a rerun does not
# reread 30 volumes, and a file changed in place gets a new hash.
_HASH_CACHE = "file-hashes.json"


def synthetic_root() -> Path:
    return cache_root() / f"synthetic-v{SYNTHETIC_VERSION}"


def ensure_synthetic(root: Path, case_ids, console: Console, spacing_scale: float = 1.0, kind: str = "btcv") -> Path:
    """Write the synthetic abdomen (``kind``: bench.data.synthetic.SYNTHETIC_KINDS) once (missing
    cases only); later calls find the marker and return."""
    # Processes started together (the same command once per GPU) take turns: the first writes the
    # cases, the others wait and find them written.
    with locked(Path(root) / ".writing.lock"):
        return _ensure_synthetic(Path(root), case_ids, console, spacing_scale, kind)


def _ensure_synthetic(root: Path, case_ids, console: Console, spacing_scale: float, kind: str) -> Path:
    marker = root / COMPLETE_MARKER
    wanted = {"version": SYNTHETIC_VERSION, "spacing_scale": spacing_scale, **SYNTHETIC_KINDS[kind].marker}
    if marker.exists():
        try:
            found = json.loads(marker.read_text())
        except ValueError:
            found = None
        if found == wanted:
            return root
        raise UserError(f"{root} holds a different synthetic dataset ({found}); choose another folder or remove it")
    case_ids = list(case_ids)
    with progress_bar(console) as progress:
        task = progress.add_task("synthesizing abdomen CTs", total=len(case_ids), status="")
        write_synthetic_dataset(root, case_ids, spacing_scale, progress=lambda _: progress.advance(task), kind=kind)
    marker.write_text(json.dumps(wanted) + "\n")
    return root


def given_data_root(data_root: Path | None) -> Path | None:
    """``--data-root``, else ``$BENCH_DATA_ROOT``; None means the synthetic abdomen."""
    return data_root or (Path(os.environ["BENCH_DATA_ROOT"]) if os.environ.get("BENCH_DATA_ROOT") else None)


def resolve_dataset(data_root: Path | None, case_ids, console: Console) -> Dataset:
    """``--data-root``, else ``$BENCH_DATA_ROOT``, else the synthetic abdomen (written on first use)."""
    root = given_data_root(data_root)
    if root is not None:
        # A folder written by `bench data synth` stays stamped synthetic wherever it is passed in.
        return locate_dataset(root, synthetic=(Path(root) / COMPLETE_MARKER).exists())
    return locate_dataset(ensure_synthetic(synthetic_root(), case_ids, console), synthetic=True)


def file_sha256(path: Path, known: dict[str, str]) -> str:
    """SHA-256 of a file's bytes, reused from ``known`` while its path, size and mtime are unchanged."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in known:
        known[key] = sha256_file(path)
    return known[key]


def data_identity(dataset: Dataset, case_ids) -> str:
    """Identity of the data for the config hash: the content of the cases' image and label files.

    Stable when the folder moves or is copied; changes when any of those files changes. The
    synthetic abdomen is identified by its generator's version (it is written deterministically).
    """
    if dataset.synthetic:
        return f"synthetic-v{SYNTHETIC_VERSION}"
    cache_path = cache_root() / _HASH_CACHE
    with locked(cache_root() / f"{_HASH_CACHE}.lock"):
        try:
            known = read_json(cache_path) if cache_path.exists() else {}
        except ValueError:
            known = {}
        before = len(known)
        parts = []
        for cid in sorted(case_ids):
            case = dataset.cases.get(cid)
            if case is None or case.label is None:
                continue
            hashes = [content_sha256(volume, lambda path: file_sha256(path, known)) for volume in (case.image, case.label)]
            parts.append(f"{cid}:{hashes[0]}:{hashes[1]}")
        if len(known) != before:
            write_json(cache_path, known)
    return "btcv-" + hashlib.sha256(";".join(parts).encode()).hexdigest()[:16]


def cache_root() -> Path:
    """The user's cache folder for synthetic data and preprocessed volumes."""
    if env := os.environ.get("BENCH_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sam3d-bench"
