"""The harness on real CT nobody here made (TotalSegmentator's reference scans, ``tests/real_ct.py``):
its 117-name label set, its organ names matched to BTCV's, a dataset check, a DICOM series whose
label is stored in another voxel order, a run that trains on two scans and scores the third, and
TotalSegmentator's own 'fast' output scored by name against its reference."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bench.data.labels import ORGANS, LabelSet
from tests.conftest import invoke
from tests.real_ct import TOTALSEG_VALUES_IN_BTCV_ORDER, build_dataset, extract_references, totalseg_classes


@pytest.fixture(scope="session")
def references(tmp_path_factory):
    return extract_references(tmp_path_factory.mktemp("totalsegmentator"))


@pytest.fixture(scope="session")
def real_dataset(references, tmp_path_factory):
    return build_dataset(references, tmp_path_factory.mktemp("real") / "data")


def totalseg_dataset_json(references, path):
    classes = totalseg_classes(references)
    path.write_text(json.dumps({"labels": {"background": 0, **{name: value for value, name in classes.items()}}}))
    return path


def test_totalsegmentators_117_names_load_and_mean_btcvs_13(references, tmp_path):
    from bench.data.btcv import labels_from_dataset_json
    from bench.data.label_match import match_organs

    classes = totalseg_classes(references)
    labels = labels_from_dataset_json(json.loads(totalseg_dataset_json(references, tmp_path / "d.json").read_text())["labels"], "d.json")
    assert labels == LabelSet(tuple(classes[v] for v in range(1, 118)))
    columns = dict(zip(labels.organs, labels.columns, strict=True))
    assert len(set(columns.values())) == 117 and columns["humerus_left"] == "HumL" and columns["hip_left"] == "HipL"
    assert [columns[f"gluteus_{m}_left"] for m in ("maximus", "medius", "minimus")] == ["GMaxL", "GMedL", "GMinL"]
    pairs = match_organs(labels.organs, ORGANS)
    assert [labels.organs.index(p.source) + 1 for p in pairs] == list(TOTALSEG_VALUES_IN_BTCV_ORDER)
    how = {p.target: p.how for p in pairs}
    assert how["spleen"] == "exact" and how["right kidney"] == "canonical" and how["portal and splenic veins"] == "synonym"


def test_a_real_dataset_checks_alone_and_its_dicom_label_is_reordered(real_dataset):
    result = invoke("data", "check", "--data-root", real_dataset)
    assert result.exit_code == 0, result.output
    assert "note: case 0003: label stored LAS, image LPS: the same grid in another voxel order" in result.output
    assert "3 cases OK" in result.output and "--test 0003 --fractions 100pct" in result.output
    against_paper = invoke("data", "check", "--data-root", real_dataset, "--protocol", "tpmamba")
    assert against_paper.exit_code == 2 and "case 0035: required by the protocol but not found" in against_paper.output


def test_totalsegmentators_fast_output_scored_by_name_against_its_reference(references, real_dataset, tmp_path):
    """The 'fast' model's label map of case 0002 (TotalSegmentator's 117 values) against the 'total'
    model's in BTCV's values: every organ matched by name, each Dice as numpy counts it."""
    protocol, preds = tmp_path / "p.json", tmp_path / "preds"
    made = invoke(
        "splits", "make", "--data-root", real_dataset, "--name", "real-0002", "--test", "0002", "--fractions", "100pct", "--out", protocol
    )
    assert made.exit_code == 0, made.output
    preds.mkdir()
    fast = references / "tests/reference_files/example_seg_fast.nii.gz"
    (preds / "ts_0002.nii.gz").write_bytes(fast.read_bytes())
    names = totalseg_dataset_json(references, tmp_path / "totalseg.json")
    args = ["score", preds, "--method", "totalseg-fast", "--data", "100pct", "--repeat", "0", "--protocol", protocol]
    result = invoke(*args, "--data-root", real_dataset, "--label-map", "by-name", "--prediction-labels", names, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "13 organs matched by name" in result.output and "portal_vein_and_splenic_vein" in result.output
    summary = json.loads((tmp_path / "runs/100pct/totalseg-fast/repeat0/summary.json").read_text())
    predicted = np.asarray(nib.load(str(fast)).dataobj)
    reference = np.asarray(nib.load(str(real_dataset / "labelsTr/ts_0002.nii.gz")).dataobj)
    present = 0
    for btcv_value, (organ, totalseg_value) in enumerate(zip(ORGANS, TOTALSEG_VALUES_IN_BTCV_ORDER, strict=True), start=1):
        p, r = predicted == totalseg_value, reference == btcv_value
        dice = summary["metric_per_case"][0]["metrics"][organ]["dice"]
        if p.sum() + r.sum() == 0:
            assert dice is None
        else:
            present += 1
            assert dice == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), abs=1e-12)
    assert present == 12


@pytest.mark.slow
def test_a_run_trains_on_two_real_scans_and_predicts_the_dicom_third(real_dataset, tmp_path):
    """Trained on the two NIfTI scans, scored on the DICOM series against its LAS label (every organ
    row present), and ``bench predict`` on the series gives the map the run scored, on the series' grid."""
    protocol, runs, out = tmp_path / "p.json", tmp_path / "runs", tmp_path / "predicted"
    made = invoke(
        "splits", "make", "--data-root", real_dataset, "--name", "real3", "--test", "0003", "--fractions", "100pct", "--out", protocol
    )
    assert made.exit_code == 0, made.output
    args = ["run", "--methods", "unetr", "--data", "100pct", "--protocol", protocol, "--data-root", real_dataset, "--out", runs]
    result = invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1", "--save-predictions")
    assert result.exit_code == 0, result.output
    assert "label stored LAS, image LPS" in result.output and "TotalSegmentator's reference CTs" in result.output
    run = runs / "100pct/unetr/repeat0"
    summary = json.loads((run / "summary.json").read_text())
    assert [c["case"] for c in summary["metric_per_case"]] == ["0003"] and list(summary["metric_per_case"][0]["metrics"]) == list(ORGANS)
    predicted = invoke("predict", run, "--images", real_dataset / "imagesTr/ts_0003", "--out", out, "--device", "cpu")
    assert predicted.exit_code == 0, predicted.output
    on_series = nib.load(str(out / "ts_0003.nii.gz"))
    scored = nib.load(str(run / "predictions/label0003.nii.gz"))
    assert nib.aff2axcodes(on_series.affine) == ("L", "P", "S") and nib.aff2axcodes(scored.affine) == ("L", "A", "S")
    np.testing.assert_array_equal(np.asarray(on_series.dataobj)[:, ::-1, :], np.asarray(scored.dataobj))


def test_nnunet_gets_the_dicom_case_as_nifti_with_its_label_on_the_series_grid(real_dataset, tmp_path):
    """nnU-Net reads NIfTI whose image and label share a grid: the NIfTI case is linked as it is, the
    DICOM series written as NIfTI with its LAS label reordered onto the series' LPS grid."""
    from bench.data.btcv import locate_dataset
    from bench.data.volumes import read_volume
    from bench.pipelines.nnunet_steps import DATASET_NAME, export_raw_dataset

    dataset = locate_dataset(real_dataset)
    folder = export_raw_dataset(tmp_path, [dataset.cases["0001"], dataset.cases["0003"]], [], None, ORGANS)
    assert folder == tmp_path / DATASET_NAME and (folder / "imagesTr/BTCV_0001_0000.nii.gz").is_symlink()
    image, label = nib.load(str(folder / "imagesTr/BTCV_0003_0000.nii.gz")), nib.load(str(folder / "labelsTr/BTCV_0003.nii.gz"))
    series = read_volume(real_dataset / "imagesTr/ts_0003")
    np.testing.assert_array_equal(np.asarray(image.dataobj), series.array)
    np.testing.assert_allclose(image.affine, series.affine, atol=1e-4)
    np.testing.assert_allclose(label.affine, series.affine, atol=1e-4)
    stored = np.asarray(nib.load(str(real_dataset / "labelsTr/ts_0003.nii.gz")).dataobj)
    np.testing.assert_array_equal(np.asarray(label.dataobj), stored[:, ::-1, :])
