"""Protocols in runs: which cases each draw trains and tests on, chosen with --protocol, recorded in
every configuration and in the runs folder, and never mixed in one report."""

from __future__ import annotations

import csv
import json

import pytest

from bench.data.synthetic import SYNTHETIC_VERSION
from bench.runs.protocol import PROTOCOL_FILE, claim_folder, folder_protocol
from splits import load_protocol, protocol_json
from tests.conftest import invoke

FAST = ["--profile", "smoke", "--device", "cpu", "--epochs", "1"]


def test_a_protocol_naming_absent_cases_is_exit_2_naming_them_and_writes_nothing(tiny_synthetic, tmp_path):
    mine = protocol_json(load_protocol())
    mine["name"] = "mine"
    mine["fractions"] = {"12pct": [{"train": ["0001", "0098"], "test": ["0035", "0099"]}]}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    out = tmp_path / "runs"
    result = invoke("run", "--methods", "unetr", "--data", "12pct", "--protocol", path, "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        f"error: protocol mine names cases that {tiny_synthetic} lacks: 0098, 0099 (run bench data check)"
    )
    assert not (out / PROTOCOL_FILE).exists() and not list(out.glob("*/*/repeat*"))


def test_a_runs_folder_holds_one_protocol(tmp_path):
    out = tmp_path / "runs"
    claim_folder(out, load_protocol("cv5"))
    assert folder_protocol(out).name == "cv5"
    claim_folder(out, load_protocol("cv5"))  # the same again: fine
    from bench.errors import UserError

    with pytest.raises(UserError, match="holds runs of protocol cv5, not tpmamba: a runs folder holds one protocol"):
        claim_folder(out, load_protocol("tpmamba"))


def test_a_folder_from_before_protocols_is_the_default_ones(tmp_path):
    (tmp_path / "25pct" / "unetr" / "repeat0").mkdir(parents=True)
    assert folder_protocol(tmp_path).name == "tpmamba"
    from bench.errors import UserError

    with pytest.raises(UserError, match="holds runs of protocol tpmamba, not cv5"):
        claim_folder(tmp_path, load_protocol("cv5"))


@pytest.mark.slow
def test_cv5_tests_every_labelled_case_once_and_the_statistics_pair_all_30(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr,vnet", "--data", "12pct", "--protocol", "cv5", "--repeats", "all"]
    result = invoke(*args, "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "protocol cv5: nnU-Net's five folds" in result.output  # under the table
    folds = load_protocol("cv5").draws["12pct"]
    for k, fold in enumerate(folds):
        config = json.loads((out / "12pct" / "unetr" / f"repeat{k}" / "config.json").read_text())
        assert config["protocol"] == "cv5" and config["test_cases"] == list(fold.test) and config["train_cases"] == list(fold.train)
    with open(out / "results.csv") as fh:
        cases = {row["case"] for row in csv.DictReader(fh) if row["method"] == "unetr"}
    assert len(cases) == 30
    with open(out / "report" / "pairwise_tests.csv") as fh:
        (test,) = list(csv.DictReader(fh))
    assert (int(test["cases"]), int(test["draws"])) == (30, 5) and test["test"].startswith("exact")
    table = (out / "report" / "table1.md").read_text()
    assert "Cases: protocol cv5" in table and "Beside the paper" not in table  # the paper's numbers are another protocol's
    html = (out / "report" / "report.html").read_text()
    assert "protocol cv5" in html and "cannot show a difference" not in html  # 30 cases can
    again = invoke("run", "--methods", "unetr", "--data", "12pct", "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert again.exit_code == 2 and "holds runs of protocol cv5, not tpmamba" in again.output


def test_a_protocol_scoring_organs_the_labels_lack_is_exit_2(tiny_synthetic, tmp_path):
    mine = protocol_json(load_protocol("synapse8"))
    mine["organs"] = ["aorta", "duodenum"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    result = invoke(
        "run", "--methods", "unetr", "--data", "100pct", "--protocol", path, "--data-root", tiny_synthetic, "--out", tmp_path, *FAST
    )
    assert result.exit_code == 2 and result.output.strip().endswith(
        "error: protocol synapse8 scores organs the dataset's labels lack: duodenum"
    )


@pytest.mark.slow
def test_synapse8_scores_its_8_organs_in_its_order(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    result = invoke(
        "run", "--methods", "unetr", "--data", "100pct", "--protocol", "synapse8", "--data-root", tiny_synthetic, "--out", out, *FAST
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "100pct" / "unetr" / "repeat0" / "config.json").read_text())
    assert len(config["labels"]) == 13 and len(config["test_cases"]) == 12  # trained on all 13 labels
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(dict.fromkeys(r["organ"] for r in rows)) == list(load_protocol("synapse8").organs) and len(rows) == 12 * 8
    table = (out / "report" / "table1.md").read_text()
    assert "| Method | Aorta | Gall | Lkid | Rkid | Liver | Panc | Sple | Sto | Avg |" in table
    assert "Cases: protocol synapse8: TransUNet's Synapse split" in table


def test_splits_make_writes_a_protocol_bench_run_reads(tiny_synthetic, tmp_path):
    fixed = tmp_path / "fixed.json"
    args = ["splits", "make", "--data-root", tiny_synthetic, "--name", "mine", "--out", fixed]
    result = invoke(*args, "--test", "0001,0002,0003", "--fractions", "100pct,50pct", "--draws", "2")
    assert result.exit_code == 0, result.output
    protocol = load_protocol(str(fixed))
    assert protocol.name == "mine" and protocol.fractions == ("100pct", "50pct") and protocol.fixed_test
    ((full),) = protocol.draws["100pct"]
    assert full.test == ("0001", "0002", "0003") and len(full.train) == 27
    assert [len(d.train) for d in protocol.draws["50pct"]] == [14, 14] and protocol.draws["50pct"][0].train != protocol.draws["50pct"][
        1
    ].train
    assert json.loads(fixed.read_text())["data_identity"] == f"synthetic-v{SYNTHETIC_VERSION}"  # what the data is

    folded = tmp_path / "folds.json"
    assert invoke("splits", "make", "--data-root", tiny_synthetic, "--name", "cv3", "--out", folded, "--folds", "3").exit_code == 0
    protocol = load_protocol(str(folded))
    tested = sorted(c for d in protocol.draws["100pct"] for c in d.test)
    assert len(protocol.draws["100pct"]) == 3 and tested == sorted(protocol.all_ids()) and len(tested) == 30
    assert [len(d.train) for d in protocol.draws["25pct"]] == [5, 5, 5]  # 25 % of a fold's 20 training cases


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --test IDS (one test set) or --folds K"),
        (["--test", "0001", "--folds", "3"], "give either --test IDS (one test set) or --folds K"),
        (["--test", "0001,0099"], "--test names cases"),
        (["--folds", "1"], "--folds must be between 2 and the 30 labelled cases, got 1"),
        (["--test", "0001", "--fractions", "100pct,half"], "--fractions takes percentages like 100pct,25pct,12pct, got 'half'"),
        (["--test", "0001", "--fractions", "25pct"], "--fractions must include 100pct"),
    ],
)
def test_splits_make_refuses_what_it_cannot_make_in_one_line(tiny_synthetic, tmp_path, args, message):
    result = invoke("splits", "make", "--data-root", tiny_synthetic, "--name", "x", "--out", tmp_path / "x.json", *args)
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_the_protocol_help_lists_every_built_in_protocol():
    from bench.cli.common import _protocols_help
    from splits import built_in_protocols, load_protocol

    text = _protocols_help()
    assert all(f"{name}" in text and load_protocol(name).description in text for name in built_in_protocols())
    assert "tpmamba (default)" in text and "synapse8" in text
