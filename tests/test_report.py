from __future__ import annotations

import math

from typer.testing import CliRunner

from bench.cli import app
from bench.data.labels import ORGANS
from bench.io import write_json
from bench.results import summarize


def fake_run(runs, data, method, repeat, liver, spleen=math.nan):
    cases = []
    for case in ("0035", "0036"):
        metrics = {o: {"dice": 0.5, "nsd": 0.5} for o in ORGANS}
        metrics["liver"] = {"dice": liver, "nsd": liver}
        metrics["spleen"] = {"dice": spleen, "nsd": spleen}
        cases.append({"case": case, "metrics": metrics})
    write_json(
        runs / data / method / f"repeat{repeat}" / "summary.json", summarize(cases, {"method": method, "data": data, "repeat": repeat})
    )


def test_report_tables_mark_best_compare_with_the_paper_and_show_missing_draws(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "25pct", "tpmamba", 0, liver=0.90, spleen=0.80)
    fake_run(runs, "25pct", "tpmamba", 1, liver=0.80, spleen=0.80)
    fake_run(runs, "25pct", "masam", 0, liver=0.70, spleen=0.90)
    result = CliRunner().invoke(app, ["report", str(runs)])
    assert result.exit_code == 0, result.output
    md = (runs / "report" / "table1.md").read_text()
    assert "tpmamba (2 of 5 draws)" in md and "masam (1 of 5 draws)" in md
    assert "**85.0 +/- 7.1**" in md  # liver: mean of 90 and 80, std over the two draws, best -> bold
    assert "<u>70.0</u>" in md  # masam's liver is second best
    assert "| &nbsp; paper | 94.5 |" in md  # the paper's TP-Mamba 25% spleen
    assert "| &nbsp; ours - paper | -14.5 |" in md  # 80.0 - 94.5
    tex = (runs / "report" / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\textcolor{red}{85.0}" in tex and "\\bottomrule" in tex
    csv_text = (runs / "report" / "table1.csv").read_text()
    assert "Liver_mean" in csv_text and "repeats" in csv_text
    assert len((runs / "report" / "cases.csv").read_text().splitlines()) == 1 + 3 * 2 * 13


def test_report_on_an_empty_folder_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no finished runs" in result.output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
