"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: strict JSON, readable by any parser."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(_json_safe(data), indent=2, default=str) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


# Errors of the place we write to, not of a run: a full disk fails every later run too, so the grid
# stops with one line instead of recording the same failure for every run.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def write_nifti_gz(path: Path, array, affine) -> None:
    """``array`` as a gzipped NIfTI with ``affine`` and the array's own data type, written atomically
    (gzip level 1: these files are written often and read once)."""
    import gzip

    import nibabel as nib

    payload = gzip.compress(nib.Nifti1Image(array, affine).to_bytes(), compresslevel=1)
    atomic_write(path, lambda fh: fh.write(payload))


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def storage_message(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the block: concurrent writers take turns."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_writable(folder: Path) -> None:
    """Create the folder and write a probe file there, so an unwritable output fails before any work."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
    finally:
        probe.unlink(missing_ok=True)
