"""Scoring in the original label space: the way back through the preprocessing, saved predictions,
and ``bench score`` on anyone's label maps."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from bench.data.btcv import locate_dataset, read_label
from bench.data.labels import NUM_CLASSES, ORGANS
from bench.data.preprocess import preprocess_case
from bench.data.regrid import to_original_grid
from bench.data.settings import PreprocessSettings
from bench.evaluation.metrics import dice_per_organ, volume_diagonal_mm
from tests.conftest import TEST_CASES, invoke, write_nifti


def one_hot(label: np.ndarray) -> np.ndarray:
    return np.stack([(label == c).astype(np.float32) for c in range(NUM_CLASSES)])


def lps_case(tmp_path, spacing):
    """A case stored LPS (i towards the patient's left, j towards posterior) with air around the body."""
    shape = (48, 40, 14)
    hu = np.full(shape, -1000, np.int16)
    hu[6:42, 5:35, :] = 40
    label = np.zeros(shape, np.uint8)
    label[10:30, 8:26, 3:11] = 6  # liver: a large block
    label[31:38, 20:30, 5:9] = 1  # spleen
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (30.0, -12.0, 7.5)
    write_nifti(tmp_path / "img" / "img0035.nii.gz", hu, affine)
    write_nifti(tmp_path / "label" / "label0035.nii.gz", label, affine)
    return locate_dataset(tmp_path).cases["0035"], label, affine


def test_the_way_back_is_exact_when_only_orientation_and_crop_differ(tmp_path):
    """Original voxels already at the profile's spacing: undoing the crop and the LPS -> RAS turn must
    give back the label voxel for voxel."""
    case, label, affine = lps_case(tmp_path, (1.5, 1.5, 1.5))
    out = preprocess_case(case, PreprocessSettings(spacing_mm=1.5))
    assert out.label.shape[1:] != label.shape  # the body crop did remove air
    back = to_original_grid(one_hot(out.label[0]), out.affine, label.shape, affine, max_chunk_bytes=1)  # one slice at a time
    np.testing.assert_array_equal(back, label)


def test_anisotropic_lps_case_comes_back_on_its_own_grid(tmp_path):
    """0.8 x 0.8 x 2.5 mm, LPS, preprocessed at 1.5 mm: the label map lands on the file's grid (shape,
    orientation), its organs where the reference has them up to the resampling's blur."""
    case, label, affine = lps_case(tmp_path, (0.8, 0.8, 2.5))
    out = preprocess_case(case, PreprocessSettings(spacing_mm=1.5))
    back = to_original_grid(one_hot(out.label[0]), out.affine, label.shape, affine)
    assert back.shape == label.shape and back.dtype == np.uint8
    dice = dice_per_organ(back, label, NUM_CLASSES)
    assert dice[ORGANS.index("liver")] > 0.9 and dice[ORGANS.index("spleen")] > 0.75
    # A flipped axis would put the spleen on the wrong side: its centre must stay where it was.
    np.testing.assert_allclose(np.argwhere(back == 1).mean(0), np.argwhere(label == 1).mean(0), atol=1.0)


@pytest.mark.parametrize("oblique", [False, True])
def test_the_way_back_interpolates_as_scipy_does(oblique):
    """Both paths (axis by axis for permuted, flipped and scaled axes; 3-D sampling for an oblique
    map) against scipy's trilinear map_coordinates, zero beyond the edges (grid-constant), class by
    class, then argmax."""
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(0)
    probabilities = rng.random((4, 9, 7, 6)).astype(np.float32)
    preprocessed = np.array([[1.5, 0, 0, -3.0], [0, 1.5, 0, 2.0], [0, 0, 1.5, 1.0], [0, 0, 0, 1]])
    original = np.array([[0, -0.8, 0, 10.0], [-0.9, 0, 0, 8.0], [0, 0, 2.5, -1.0], [0, 0, 0, 1]])  # x <-> y, flipped, anisotropic
    if oblique:
        turn = np.radians(10)
        rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
        original[:3, :3] = rotation @ original[:3, :3]
    shape = (16, 13, 7)  # reaches beyond the preprocessed grid on every side
    got = to_original_grid(probabilities, preprocessed, shape, original, max_chunk_bytes=1)
    to_preprocessed = np.linalg.inv(preprocessed) @ original
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    coords = (index @ to_preprocessed[:3, :3].T + to_preprocessed[:3, 3]).T
    sampled = np.stack([map_coordinates(p, coords, order=1, mode="grid-constant", cval=0.0) for p in probabilities])
    expected = sampled.argmax(axis=0).reshape(shape)
    assert (got == expected).mean() > 0.999  # float32 against float64: a near-tie may flip
    assert (got != 0).any() and (expected == 0).any()


@pytest.fixture
def label_dir(tiny_synthetic):
    return tiny_synthetic / "RawData" / "Training" / "label"


def score_args(pred_dir, tiny_synthetic, out, method="external"):
    return ["score", pred_dir, "--method", method, "--data", "12pct", "--repeat", "0", "--data-root", tiny_synthetic, "--out", out]


def test_scoring_the_reference_labels_gives_perfect_scores(tiny_synthetic, label_dir, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    for case in TEST_CASES:
        shutil.copy(label_dir / f"label{case}.nii.gz", preds / f"BTCV_{int(case):03d}.nii.gz")  # nnU-Net's naming
    result = invoke(*score_args(preds, tiny_synthetic, tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "12pct" / "external" / "repeat0" / "summary.json").read_text())
    assert summary["eval_space"] == "original" and summary["nsd_tolerance_mm"] == 1.0
    for case in summary["metric_per_case"]:
        for organ, m in case["metrics"].items():
            if m["n_ref"]:
                assert (m["dice"], m["nsd"], m["hd95"]) == (1.0, 1.0, 0.0), (case["case"], organ)
    config = json.loads((tmp_path / "runs" / "12pct" / "external" / "repeat0" / "config.json").read_text())
    assert config["family"] == "external predictions" and str(preds) in config["weights"]
    report = invoke("report", tmp_path / "runs")
    assert report.exit_code == 0, report.output
    assert "external" in (tmp_path / "runs" / "report" / "table1.md").read_text()
    assert len((tmp_path / "runs" / "results.csv").read_text().splitlines()) == 1 + 6 * 13  # rebuilt by the run's lifecycle
    again = invoke(*score_args(preds, tiny_synthetic, tmp_path / "runs"))
    assert again.exit_code == 0 and "finished earlier, skipped" in again.output
    first = sorted(preds.iterdir())[0]
    nifti = nib.load(str(first))
    write_nifti(first, np.zeros(nifti.shape, np.uint8), nifti.affine)  # other predictions, same label and draw
    other = invoke(*score_args(preds, tiny_synthetic, tmp_path / "runs"))
    assert other.exit_code == 2 and "different configuration" in other.output


def test_an_organ_left_out_scores_zero_and_the_volume_diagonal(tiny_synthetic, label_dir, tmp_path):
    preds = tmp_path / "preds"
    for case in TEST_CASES:
        nifti = nib.load(str(label_dir / f"label{case}.nii.gz"))
        labels = np.asarray(nifti.dataobj).copy()
        labels[labels == 6] = 0  # no liver
        write_nifti(preds / f"label{case}.nii.gz", labels, nifti.affine)
    assert invoke(*score_args(preds, tiny_synthetic, tmp_path / "runs")).exit_code == 0
    summary = json.loads((tmp_path / "runs" / "12pct" / "external" / "repeat0" / "summary.json").read_text())
    first = summary["metric_per_case"][0]["metrics"]
    reference = nib.load(str(label_dir / f"label{TEST_CASES[0]}.nii.gz"))
    diagonal = volume_diagonal_mm(reference.shape, tuple(float(z) for z in reference.header.get_zooms()))
    assert first["liver"]["dice"] == 0.0 and first["liver"]["nsd"] == 0.0
    assert first["liver"]["hd95"] == pytest.approx(diagonal)
    assert first["spleen"]["dice"] == 1.0 and summary["mean"]["liver"]["dice"] == 0.0


@pytest.mark.parametrize("fault", ["missing", "shape", "affine", "values", "corrupt"])
def test_bad_predictions_are_one_line_naming_the_file(tiny_synthetic, label_dir, tmp_path, fault):
    preds = tmp_path / "preds"
    preds.mkdir()
    for case in TEST_CASES:
        shutil.copy(label_dir / f"label{case}.nii.gz", preds / f"label{case}.nii.gz")
    target = preds / f"label{TEST_CASES[2]}.nii.gz"
    nifti = nib.load(str(target))
    labels = np.asarray(nifti.dataobj)
    if fault == "missing":
        target.unlink()
    elif fault == "shape":
        write_nifti(target, labels[:-1], nifti.affine)
    elif fault == "affine":
        write_nifti(target, labels, nifti.affine @ np.diag([2.0, 1.0, 1.0, 1.0]))
    elif fault == "values":
        bad = labels.copy()
        bad[0, 0, 0] = 14
        write_nifti(target, bad, nifti.affine)
    else:
        target.write_bytes(target.read_bytes()[:100])
    result = invoke(*score_args(preds, tiny_synthetic, tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert TEST_CASES[2] in lines[0]
    assert not (tmp_path / "runs" / "12pct" / "external").exists()


def test_a_one_voxel_shift_scores_what_an_independent_computation_gives(tiny_synthetic, label_dir, tmp_path):
    """Every label moved one voxel along the coarse (27 mm) axis: Dice by counting voxels, NSD and
    HD95 by surface-distance on the whole volume, without bench's crop."""
    import surface_distance

    preds = tmp_path / "preds"
    for case in TEST_CASES:
        nifti = nib.load(str(label_dir / f"label{case}.nii.gz"))
        write_nifti(preds / f"label{case}.nii.gz", np.roll(np.asarray(nifti.dataobj), 1, axis=2), nifti.affine)
    assert invoke(*score_args(preds, tiny_synthetic, tmp_path / "runs")).exit_code == 0
    summary = json.loads((tmp_path / "runs" / "12pct" / "external" / "repeat0" / "summary.json").read_text())
    nifti = nib.load(str(label_dir / f"label{TEST_CASES[0]}.nii.gz"))
    reference = np.asarray(nifti.dataobj)
    shifted = np.roll(reference, 1, axis=2)
    spacing = tuple(float(z) for z in nifti.header.get_zooms())
    got = summary["metric_per_case"][0]["metrics"]["liver"]
    ref_mask, pred_mask = reference == 6, shifted == 6
    assert got["dice"] == pytest.approx(2 * (ref_mask & pred_mask).sum() / (ref_mask.sum() + pred_mask.sum()))
    distances = surface_distance.compute_surface_distances(ref_mask, pred_mask, spacing)
    assert got["nsd"] == pytest.approx(surface_distance.compute_surface_dice_at_tolerance(distances, 1.0))
    assert got["hd95"] == pytest.approx(surface_distance.compute_robust_hausdorff(distances, 95))
    assert got["dice"] < 1.0 and got["hd95"] > 0.0


@pytest.mark.slow
def test_a_run_saves_predictions_on_the_label_grid_and_bench_score_agrees_with_it(tiny_synthetic, label_dir, tmp_path):
    """--save-predictions: one NIfTI per test case with the label file's shape and affine (the
    synthetic abdomen is stored LPS with 5.2 x 5.2 x 27 mm voxels at the tests' scale, so this is the
    anisotropic, non-RAS case); scoring those files with bench score reproduces the run's own
    original-space scores exactly."""
    out = tmp_path / "runs"
    args = ["run", "--methods", "nnunet", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out]
    result = invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1", "--save-predictions")
    assert result.exit_code == 0, result.output
    assert "scored in the original label space" in result.output
    run_dir = out / "12pct" / "nnunet" / "repeat0"
    saved = sorted(p.name for p in (run_dir / "predictions").iterdir())
    assert saved == [f"label{case}.nii.gz" for case in TEST_CASES]
    for case in TEST_CASES:
        prediction, reference = (
            nib.load(str(run_dir / "predictions" / f"label{case}.nii.gz")),
            nib.load(str(label_dir / f"label{case}.nii.gz")),
        )
        assert prediction.shape == reference.shape
        np.testing.assert_allclose(prediction.affine, reference.affine, atol=1e-5)
    scored = invoke(*score_args(run_dir / "predictions", tiny_synthetic, out, method="rescored"))
    assert scored.exit_code == 0, scored.output
    ours = json.loads((run_dir / "summary.json").read_text())
    theirs = json.loads((out / "12pct" / "rescored" / "repeat0" / "summary.json").read_text())
    assert ours["eval_space"] == "original"
    assert ours["metric_per_case"] == theirs["metric_per_case"]
    # The space is part of the configuration: the same run scored on the other grid is another run.
    other = invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1", "--eval-space", "preprocessed")
    assert other.exit_code == 2 and "holds a run with a different configuration" in other.output


@pytest.mark.parametrize(
    ("option", "value", "message"), [("--eval-space", "voxel", "unknown --eval-space"), ("--nsd-tolerance", "0", "--nsd-tolerance")]
)
def test_impossible_scoring_options_are_one_line(tiny_synthetic, tmp_path, option, value, message):
    args = ["run", "--methods", "nnunet", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", tmp_path / "runs"]
    result = invoke(*args, "--profile", "smoke", "--device", "cpu", option, value)
    assert result.exit_code == 2 and result.output.startswith("error:") and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_read_label_is_the_file_untouched(tiny_synthetic):
    case = locate_dataset(tiny_synthetic).cases["0035"]
    label, affine = read_label(case)
    nifti = nib.load(str(case.label))
    np.testing.assert_array_equal(label, np.asarray(nifti.dataobj))
    np.testing.assert_array_equal(affine, nifti.affine)
