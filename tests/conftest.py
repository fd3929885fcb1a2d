from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.btcv import BTCV_LABELLED_IDS


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache and no data root from the environment."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """The synthetic abdomen at 6x the voxel size (same anatomy, ~200x fewer voxels), written once."""
    from rich.console import Console

    from bench.datasource import ensure_synthetic

    root = tmp_path_factory.mktemp("tiny-synthetic")
    ensure_synthetic(root, BTCV_LABELLED_IDS, Console(quiet=True), spacing_scale=6.0)
    return root


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path
