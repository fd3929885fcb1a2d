"""A dataset's label set is data: from its dataset.json, BTCV's 13 organs by default, and every
table, score and network follows it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bench.data.btcv import labels_from_dataset_json, locate_dataset
from bench.data.labels import BTCV_LABELS, ORGAN_COLUMNS, LabelSet, column_name
from bench.errors import DataError
from tests.conftest import invoke

# Three of BTCV's organs under new values, the rest background: another dataset's label set.
REMAP = {"liver": 6, "spleen": 1, "duodenum": 7}  # duodenum painted where BTCV's stomach is


def test_both_dataset_json_forms_give_the_label_set():
    nnunet = labels_from_dataset_json({"background": 0, "liver": 1, "urinary bladder": 2}, "d.json")
    decathlon = labels_from_dataset_json({"0": "background", "1": "liver", "2": "urinary bladder"}, "d.json")
    assert nnunet == decathlon == LabelSet(("liver", "urinary bladder"))
    assert nnunet.columns == ("Liver", "UBla") and nnunet.num_classes == 3 and nnunet.values == {0, 1, 2}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"background": 0, "liver": 1, "hepar": 1}, "label value 1 has two names, 'liver' and 'hepar'"),
        ({"liver": 1}, "no background label 0"),
        ({"background": 0, "liver": 1, "spleen": 3}, "label values must be 0, 1, ..., N without gaps"),
        ({"background": 0, "liver": "one"}, "label 'one' has no whole-number value|label 'liver' has no whole-number value"),
    ],
)
def test_a_bad_label_set_is_one_line_naming_the_file(labels, message):
    with pytest.raises(DataError, match=f"d.json: ({message})"):
        labels_from_dataset_json(labels, "d.json")


def test_btcv_keeps_table_1_columns_and_other_organs_get_short_ones():
    assert BTCV_LABELS.columns == ORGAN_COLUMNS and BTCV_LABELS.num_classes == 14 and BTCV_LABELS.is_btcv
    assert column_name("duodenum") == "Duode" and column_name("prostate/uterus") == "PUte"


def decathlon_copy(tiny: Path, root: Path, labels: dict, remap: dict[str, int] | None, name: str = "mine") -> Path:
    """The tiny synthetic abdomen in the Decathlon layout with ``labels`` in its dataset.json; each
    label map's organs renumbered by ``remap`` (new name -> BTCV value), the rest set to background."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for image in sorted((tiny / "RawData" / "Training" / "img").glob("*.nii.gz")):
        cid = image.name[3:7]
        label = nib.load(str(tiny / "RawData" / "Training" / "label" / f"label{cid}.nii.gz"))
        values = np.asarray(label.dataobj)
        out = values if remap is None else np.zeros_like(values)
        for organ, btcv_value in (remap or {}).items():
            out[values == btcv_value] = labels[organ]
        (root / "imagesTr" / f"case_{cid}_0000.nii.gz").write_bytes(image.read_bytes())
        nib.save(nib.Nifti1Image(out.astype(np.uint8), label.affine), str(root / "labelsTr" / f"case_{cid}.nii.gz"))
        training.append({"image": f"imagesTr/case_{cid}_0000.nii.gz", "label": f"labelsTr/case_{cid}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": name, "labels": labels, "training": training}))
    return root


def test_a_label_value_the_dataset_json_does_not_name_is_reported(tiny_synthetic, tmp_path):
    root = decathlon_copy(tiny_synthetic, tmp_path / "d", {"background": 0, "liver": 1}, remap=None)  # BTCV's 13 values kept
    assert locate_dataset(root).labels == LabelSet(("liver",))
    result = invoke("data", "check", "--data-root", root)
    assert result.exit_code != 0 and "label values outside 0..1 in" in result.output


def test_monais_btcv_json_with_short_names_is_btcv(tiny_synthetic, tmp_path):
    short = {"0": "background", **{str(i + 1): c.lower() for i, c in enumerate(ORGAN_COLUMNS)}}
    root = decathlon_copy(tiny_synthetic, tmp_path / "d", short, remap=None, name="btcv")
    assert locate_dataset(root).labels == BTCV_LABELS


@pytest.mark.slow
def test_another_label_set_runs_end_to_end_with_its_own_columns(tiny_synthetic, tmp_path):
    labels = {"background": 0, "liver": 1, "spleen": 2, "duodenum": 3}
    root = decathlon_copy(tiny_synthetic, tmp_path / "d", labels, REMAP)
    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr", "--data", "12pct", "--data-root", root, "--out", out]
    result = invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "Liver" in result.output and "Duode" in result.output and "Panc" not in result.output
    config = json.loads((out / "12pct" / "unetr" / "repeat0" / "config.json").read_text())
    assert config["labels"] == ["liver", "spleen", "duodenum"]
    with open(out / "results.csv") as fh:
        assert {row["organ"] for row in csv.DictReader(fh)} == {"liver", "spleen", "duodenum"}
    table = (out / "report" / "table1.md").read_text()
    assert "| Method | Liver | Sple | Duode | Avg |" in table
    assert "report.html" in result.output and 'data-method="unetr"' in (out / "report" / "report.html").read_text()


def test_the_amos_like_case_paints_all_15_organs_and_not_the_veins():
    from bench.data.amos import AMOS_ORGANS
    from bench.data.synthetic import synthesize_amos_case

    image, label, _ = synthesize_amos_case("0501", spacing_scale=6.0)
    assert set(np.unique(label).tolist()) == set(range(16)) and len(AMOS_ORGANS) == 15
    assert image.shape == label.shape


@pytest.mark.slow
def test_an_amos_like_dataset_runs_end_to_end_under_its_own_protocol(tmp_path):
    root, protocol = tmp_path / "amos", tmp_path / "amos5.json"
    assert invoke("data", "synth", "--dataset", "amos", "--out", root, "--spacing-scale", "6").exit_code == 0
    labels = locate_dataset(root).labels
    assert labels.organs[12:] == ("duodenum", "bladder", "prostate/uterus") and labels.num_classes == 16
    assert invoke("splits", "make", "--data-root", root, "--name", "amos5", "--folds", "5", "--out", protocol).exit_code == 0
    check = invoke("data", "check", "--data-root", root, "--protocol", protocol)
    assert check.exit_code == 0, check.output
    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr", "--data", "12pct", "--protocol", protocol, "--data-root", root, "--out", out]
    result = invoke(*args, "--profile", "smoke", "--device", "cpu", "--epochs", "1")
    assert result.exit_code == 0, result.output
    table = (out / "report" / "table1.md").read_text()
    assert (
        "| Method | Sple | Rkid | Lkid | Gall | Eso | Liver | Sto | Aorta | IVC | Panc | Rad | Lad | Duode | Bladd | PUte | Avg |" in table
    )
    assert "SYNTHETIC" in table and "protocol amos5" in table


def test_a_btcv_model_scored_on_another_dataset_by_organ_name(tmp_path):
    """Predictions in BTCV's values against AMOS-like references under AMOS's names: the 12 organs
    both have are matched by meaning and scored (here perfect, the predictions being the references
    renumbered), the other three skipped; a mapping file settles or removes pairs."""
    from bench.data.amos import AMOS_ORGANS

    root, protocol, preds = tmp_path / "amos", tmp_path / "p.json", tmp_path / "preds"
    assert invoke("data", "synth", "--dataset", "amos", "--out", root, "--spacing-scale", "6").exit_code == 0
    test = "0501,0502,0503,0504,0505,0506"
    made = invoke("splits", "make", "--data-root", root, "--name", "amos-test", "--test", test, "--fractions", "100pct", "--out", protocol)
    assert made.exit_code == 0, made.output
    # AMOS's values 1-9 are BTCV's, its 10-12 BTCV's 11-13 (pancreas, adrenal glands); 13-15 BTCV lacks.
    to_btcv = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 0, 0, 0], dtype=np.uint8)
    preds.mkdir()
    for cid in test.split(","):
        label = nib.load(str(root / "labelsTr" / f"amos_{cid}.nii.gz"))
        nib.save(nib.Nifti1Image(to_btcv[np.asarray(label.dataobj)], label.affine), str(preds / f"amos_{cid}.nii.gz"))
    args = ["score", preds, "--method", "btcv-model", "--data", "100pct", "--repeat", "0", "--data-root", root, "--protocol", protocol]
    assert (
        "--prediction-labels needs --label-map by-name or --label-map FILE"
        in invoke(*args, "--prediction-labels", root / "dataset.json", "--out", tmp_path / "x").output
    )
    result = invoke(*args, "--label-map", "by-name", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "12 organs matched by name" in result.output
    rows = [line.split("│")[1:-1] for line in result.output.splitlines() if line.startswith("│")]
    assert [cell.strip() for cell in rows[8]] == ["inferior vena cava", "9", "postcava", "9", "synonym"]
    assert [cell.strip() for cell in rows[3]] == ["gallbladder", "4", "gall bladder", "4", "canonical"]
    assert "skipped, not in the predictions' labels: duodenum, bladder, prostate/uterus" in result.output
    assert "counted as background): portal and splenic veins" in result.output
    summary = json.loads((tmp_path / "runs" / "100pct" / "btcv-model" / "repeat0" / "summary.json").read_text())
    assert list(summary["mean"]) == list(AMOS_ORGANS[:12])
    assert all(m["dice"] == 1.0 for m in summary["mean"].values() if m["dice"] == m["dice"])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"liver": None, "8": "aorta"}))
    result = invoke(*args, "--label-map", mapping, "--out", tmp_path / "mapped")
    assert result.exit_code == 0, result.output
    assert "11 organs matched by name" in result.output and "mapping file" in result.output
    assert "liver" not in json.loads((tmp_path / "mapped/100pct/btcv-model/repeat0/summary.json").read_text())["mean"]
    mapping.write_text(json.dumps({"liver": "hepar"}))
    result = invoke(*args, "--label-map", mapping, "--out", tmp_path / "bad")
    assert result.exit_code == 2 and "the mapping sends 'liver' to 'hepar', which the dataset's labels do not name" in result.output
    result = invoke(*args, "--label-map", tmp_path / "none.json", "--out", tmp_path / "bad")
    assert result.exit_code == 2 and "--label-map must be same, by-name or a JSON mapping file" in result.output


# Label sets as their datasets publish them (dataset.json / papers): AMOS22 (CT), WORD, FLARE22.
AMOS = (
    "spleen", "right kidney", "left kidney", "gall bladder", "esophagus", "liver", "stomach", "aorta", "postcava",
    "pancreas", "right adrenal gland", "left adrenal gland", "duodenum", "bladder", "prostate/uterus",
)  # fmt: skip
WORD = (
    "liver", "spleen", "left_kidney", "right_kidney", "stomach", "gallbladder", "esophagus", "pancreas", "duodenum",
    "colon", "intestine", "adrenal", "rectum", "bladder", "Head_of_femur_L", "Head_of_femur_R",
)  # fmt: skip
FLARE22 = (
    "liver", "right kidney", "spleen", "pancreas", "aorta", "inferior vena cava", "right adrenal gland",
    "left adrenal gland", "gallbladder", "esophagus", "stomach", "duodenum", "left kidney",
)  # fmt: skip


@pytest.mark.parametrize("organs", [AMOS, WORD, FLARE22], ids=["amos", "word", "flare22"])
def test_published_label_sets_load_with_one_column_each(organs):
    labels = labels_from_dataset_json({"background": 0, **{o: i + 1 for i, o in enumerate(organs)}}, "dataset.json")
    assert labels.organs == organs and len(set(labels.columns)) == len(organs)


def test_columns_keep_side_and_number_and_never_coincide():
    sided = LabelSet(("humerus_left", "hip_left", "gluteus_maximus_left", "gluteus_medius_left", "gluteus_minimus_left", "rib_left_3"))
    assert sided.columns == ("HumL", "HipL", "GMaxL", "GMedL", "GMinL", "RibL3")
    # Organs meaning BTCV's keep Table 1's columns, whatever their spelling.
    assert LabelSet(AMOS).columns[:12] == ("Sple", "Rkid", "Lkid", "Gall", "Eso", "Liver", "Sto", "Aorta", "IVC", "Panc", "Rad", "Lad")
    assert LabelSet(WORD).columns[-2:] == ("HFemL", "HFemR")
    # Short forms that coincide take more letters, and in the end their label value.
    assert LabelSet(("pancreatic duct", "pancreatic ductus")).columns == ("PDuct", "PDuctu")
    assert LabelSet(("Liver", "liver")).columns == ("Liver1", "Liver2")


def test_nnunet_ignore_label_loads_and_regions_are_one_line():
    labels = labels_from_dataset_json({"background": 0, "liver": 1, "spleen": 2, "ignore": 3}, "d.json")
    assert labels.organs == ("liver", "spleen") and labels.ignore == 3 and labels.file_values == {0, 1, 2, 3} and labels.values == {0, 1, 2}
    with pytest.raises(DataError, match="d.json: the ignore label must be the highest value, 3"):
        labels_from_dataset_json({"background": 0, "liver": 1, "spleen": 2, "ignore": 7}, "d.json")
    with pytest.raises(DataError, match=r"d.json: label 'whole tumor' is a region \(\[1, 2, 3\]\); region-based label sets"):
        labels_from_dataset_json({"background": 0, "whole tumor": [1, 2, 3], "edema": 1}, "d.json")


def test_organs_match_by_meaning_and_say_how():
    from bench.data.label_match import match_organs
    from bench.data.labels import ORGANS

    how = {p.source: (p.target, p.how) for p in match_organs(AMOS, ORGANS)}
    assert len(how) == 12 and how["postcava"] == ("inferior vena cava", "synonym") and how["gall bladder"] == ("gallbladder", "canonical")
    assert how["spleen"] == ("spleen", "exact")
    word = {p.source: p.target for p in match_organs(WORD, ORGANS)}
    assert word["left_kidney"] == "left kidney" and word["right_kidney"] == "right kidney" and len(word) == 8
    assert "adrenal" not in word  # WORD's one adrenal label holds both sides: it means neither of BTCV's
    monai = ("spleen", "rkid", "lkid", "gall", "eso", "liver", "sto", "aorta", "IVC", "veins", "pancreas", "rad", "lad")
    assert [p.target for p in match_organs(monai, ORGANS)] == list(ORGANS)
    assert {p.source: p.target for p in match_organs(("Kidney (L)", "kidneyRight", "L adrenal"), ORGANS)} == {
        "Kidney (L)": "left kidney",
        "kidneyRight": "right kidney",
    }


def test_an_ambiguous_name_or_mapping_is_one_line():
    from bench.data.label_match import match_organs

    with pytest.raises(DataError, match=r"'postcava' matches 2 organs of the dataset \('IVC', 'inferior vena cava'\)"):
        match_organs(("postcava",), ("IVC", "inferior vena cava"))
    with pytest.raises(DataError, match="'gall bladder' and 'gallbladder' both match 'gallbladder'"):
        match_organs(("gall bladder", "gallbladder"), ("gallbladder",))
    with pytest.raises(DataError, match="sends 'liver' to 'hepar', which the dataset's labels do not name"):
        match_organs(("liver",), ("liver",), {"liver": "hepar"})
    with pytest.raises(DataError, match="names '7', which is neither an organ nor a label value"):
        match_organs(("liver",), ("liver",), {"7": "liver"})
    # A mapping settles what meaning cannot, by name or value, and can leave an organ out.
    pairs = match_organs(
        ("adrenal", "liver", "spleen"), ("right adrenal gland", "liver", "spleen"), {"1": "right adrenal gland", "spleen": None}
    )
    assert [(p.source, p.target, p.how) for p in pairs] == [("adrenal", "right adrenal gland", "mapping file"), ("liver", "liver", "exact")]
