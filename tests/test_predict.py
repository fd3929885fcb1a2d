"""bench predict: a finished run's network on any folder of images gives the label maps the run
itself scored (same weights, preprocessing and sliding window), on each image's own grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import invoke


def test_a_folder_that_is_not_a_finished_run_is_exit_2(tmp_path):
    (tmp_path / "images").mkdir()
    result = invoke("predict", tmp_path / "nothing", "--images", tmp_path / "images", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "is not a finished run with its weights" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_predict_gives_the_label_maps_the_run_scored(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr,samed", "--data", "12pct", "--data-root", tiny_synthetic, "--out", out, "--save-predictions"]
    assert invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1").exit_code == 0
    images = tmp_path / "images"
    images.mkdir()
    for cid in ("0035", "0036"):
        (images / f"img{cid}.nii.gz").write_bytes((tiny_synthetic / "RawData" / "Training" / "img" / f"img{cid}.nii.gz").read_bytes())
    (images / "img0099.nii.gz").write_bytes(b"not a nifti")
    for method in ("unetr", "samed"):  # samed: its frozen random toy ViT rebuilt from the run's seed
        run = out / "12pct" / method / "repeat0"
        result = invoke("predict", run, "--images", images, "--out", tmp_path / method, "--device", "cpu")
        assert (
            result.exit_code == 2 and "img0099.nii.gz: cannot read" in result.output and "1 of 3 images could not be read" in result.output
        )
        for cid in ("0035", "0036"):
            mine = nib.load(str(tmp_path / method / f"img{cid}.nii.gz"))
            scored = nib.load(str(run / "predictions" / f"label{cid}.nii.gz"))
            assert np.array_equal(np.asarray(mine.dataobj), np.asarray(scored.dataobj)) and np.allclose(mine.affine, scored.affine)
