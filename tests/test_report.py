"""bench report on runs folders the tests build: tables, figures, paired tests, grid gaps, LaTeX and the HTML in a browser."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from bench.io import read_json, write_json
from bench.reporting.tables import table1
from bench.runs.files import CONFIG_FILE, SUMMARY_FILE, LogLine, RunSummary
from bench.runs.state import grid_counts, record_failure, scan_grid
from tests.conftest import invoke, write_finished_run

# CI installs Debian's chromium and TeX and sets this, so there the browser and LaTeX tests cannot skip.
REQUIRE_TOOLS = os.environ.get("BENCH_REQUIRE_REPORT_TOOLS") == "1"


def failed_run(runs, data, method, repeat, reason="loss is NaN at epoch 2"):
    run_dir = runs / data / method / f"repeat{repeat}"
    run_dir.mkdir(parents=True)
    (run_dir / "log.jsonl").write_text(LogLine(1, 0.9, 1e-3, 1.0).to_json() + "\n")
    record_failure(run_dir, FloatingPointError(reason), "Traceback ...")


@pytest.fixture
def grid_folder(tmp_path):
    """25%: tpmamba 2 draws done, masam 1 done + 1 failed; 12%: masam 1 done, tpmamba none. The rest missing."""
    runs = tmp_path / "runs"
    write_finished_run(runs, "25pct", "tpmamba", 0, liver=0.90, spleen=0.80, shift=0.10)
    write_finished_run(runs, "25pct", "tpmamba", 1, liver=0.80, spleen=0.80, shift=0.10)
    write_finished_run(runs, "25pct", "masam", 0, liver=0.70, spleen=0.90)
    failed_run(runs, "25pct", "masam", 1)
    write_finished_run(runs, "12pct", "masam", 0, liver=0.60)
    return runs


def test_grid_scan_finds_done_failed_and_missing_runs(grid_folder):
    states = {(s.data, s.method, s.repeat): s for s in scan_grid(grid_folder)}
    assert len(states) == 2 * 5 + 2 * 5  # two methods x (5 draws at 25% + 5 at 12%)
    assert states[("25pct", "masam", 1)].state == "failed" and "NaN" in states[("25pct", "masam", 1)].reason
    assert states[("25pct", "masam", 1)].epochs_done == 1
    assert states[("25pct", "tpmamba", 0)].state == "done" and states[("25pct", "tpmamba", 0)].epochs_done == 3
    assert states[("12pct", "tpmamba", 0)].state == "missing"
    counts = grid_counts(list(states.values()))
    assert counts[("25pct", "masam")] | {"reasons": None} == {
        "running": 0,
        "done": 1,
        "failed": 1,
        "incomplete": 0,
        "missing": 3,
        "expected": 5,
        "reasons": None,
    }


def test_report_tables_mark_best_compare_with_the_paper_and_show_gaps(grid_folder):
    result = invoke("report", grid_folder)
    assert result.exit_code == 0, result.output
    out = grid_folder / "report"
    md = (out / "table1.md").read_text()
    assert "tpmamba (2 of 5 draws; 3 missing)" in md and "masam (1 of 5 draws; 1 failed, 3 missing)" in md
    assert "tpmamba (0 of 5 draws; 5 missing)" in md  # a grid cell with nothing finished is still a row
    assert "Failed runs: masam repeat 1: FloatingPointError: loss is NaN at epoch 2" in md
    assert "**85.0 +/- 7.1**" in md  # liver: mean of 90 and 80, std over the two draws, best -> bold
    assert "<u>70.0</u>" in md  # masam's liver is second best
    assert "| | | paper | 94.5 |" in md  # the paper's TP-Mamba 25% spleen
    assert "| | | ours - paper | -14.5 |" in md  # 80.0 - 94.5
    compact = (out / "table1_compact.md").read_text()
    assert "**85.0**" in compact and "+/-" not in compact
    tex = (out / "table1.tex").read_text()
    assert "\\textcolor{red}{85.0}$_{\\pm 7.1}$" in tex and "\\bottomrule" in tex
    assert "\\textcolor{red}{85.0} &" in (out / "table1_compact.tex").read_text()
    csv_text = (out / "table1.csv").read_text()
    assert "Liver_mean" in csv_text and "repeats" in csv_text
    assert len((out / "cases.csv").read_text().splitlines()) == 1 + 4 * 6 * 13
    pngs = ("fig4_convergence.png", "fig1a_dice_vs_data.png", "organs_25pct.png", "organs_12pct.png", "significance_25pct.png")
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs) and "<script" not in html
    assert "Scores: scored in the original label space (each label file's grid and voxel spacing); NSD at 1 mm" in md
    hd95 = (out / "table_hd95.md").read_text()
    # liver HD95: tpmamba 2 and 4 mm over its draws, masam 6 mm; lower is better, so tpmamba is bold
    assert "# HD95 (mm) on the test cases" in hd95 and "**3.0 +/- 1.4**" in hd95 and "<u>6.0</u>" in hd95
    assert "Best (lowest)" in hd95 and "paper" not in hd95
    # Beside the mean: the median over 6 cases x 13 organs x 2 draws (mostly 10 mm) and no organ missed.
    assert "| tpmamba | 9.0 | 10.0 | 0 of 156 | 0 |" in hd95 and "field of view's corner-to-corner diagonal" in hd95
    assert "<dt>scoring</dt>" in html and "NSD at 1 mm" in html
    assert "# NSD (%) on the test cases" in (out / "table_nsd.md").read_text()
    tests = pd.read_csv(out / "pairwise_tests.csv")
    # The pair shares draw 0 only (masam's draw 1 failed): six cases, one draw each.
    assert tests[["data", "first", "second", "cases", "draws", "test"]].values.tolist() == [
        ["25pct", "tpmamba", "masam", 6, 1, "exact, mid-ranks for tied differences"]
    ]
    boot = pd.read_csv(out / "bootstrap.csv")
    assert boot["method"].tolist() == ["tpmamba", "masam"] and (boot["ci_low"] <= boot["mean"]).all()


def test_report_html_escapes_what_it_did_not_write(grid_folder):
    failed_run(grid_folder, "25pct", "masam", 2, reason="<script>alert(1)</script> & more")
    assert invoke("report", grid_folder).exit_code == 0
    html = (grid_folder / "report" / "report.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


def test_every_pair_is_tested_on_cases_of_the_same_draw_with_the_exact_distribution(grid_folder):
    from bench.reporting.data import load_report_data
    from bench.reporting.report import statistics

    data = load_report_data(grid_folder)
    stats = {st["fraction"]: st for st in statistics(data, table1(data.results))}
    assert set(stats) == {"25pct"}  # 12%: one method only, nothing to compare
    (test,) = stats["25pct"]["tests"]
    # Only draw 0 exists for both: 6 case pairs. tpmamba is better on every case (liver 90 vs 70 and
    # stomach +10), so all six signed ranks are positive: exact two-sided p = 2 / 2**6; one test, so Holm changes nothing.
    assert (test["first"], test["second"], test["cases"], test["draws"]) == ("tpmamba", "masam", 6, 1)
    assert test["p_value"] == pytest.approx(2 / 2**6) and test["p_holm"] == pytest.approx(2 / 2**6) and test["significant"]
    expected_diff = ((0.90 - 0.70) + (0.80 - 0.90) + 0.10) / 13 * 100  # liver, spleen, stomach; other organs tie
    assert test["mean_diff"] == pytest.approx(expected_diff)
    assert stats["25pct"]["order"] == ["tpmamba", "masam"] and stats["25pct"]["power"] is None  # masam has one draw


def test_six_cases_and_three_methods_say_what_they_cannot_show_instead_of_an_empty_heatmap(tmp_path):
    runs = tmp_path / "runs"
    write_finished_run(runs, "25pct", "tpmamba", 0, liver=0.90, shift=0.10)
    write_finished_run(runs, "25pct", "masam", 0, liver=0.70)
    write_finished_run(runs, "25pct", "samed", 0, liver=0.0)  # the liver missed in all six cases
    result = invoke("report", runs)
    assert result.exit_code == 0, result.output
    out = runs / "report"
    html = (out / "report.html").read_text()
    sentence = "6 test cases cannot show a difference between 3 methods at alpha 0.05 after Holm&#39;s correction over 3 pairs"
    assert sentence in html and "use more test cases or cross-validation" in html
    assert not (out / "significance_25pct.png").exists() and 'class="fig-significance"' not in html
    tests = pd.read_csv(out / "pairwise_tests.csv")
    assert len(tests) == 3 and not tests["significant"].any() and (tests["p_value"] == 2 / 2**6).all()
    assert "scipy " in html and "pandas " in html  # the versions that computed the statistics
    hd95 = (out / "table_hd95.md").read_text()
    # samed's six missed livers get the penalty; write_finished_run gives it as 20 mm x (1 - Dice) = 20 mm.
    assert "| samed | 10.8 | 10.0 | 6 of 72 | 0 |" in hd95  # 12 organs x 6 cases (no spleen) and "(20 mm in these scans)" in hd95


def test_the_terminal_table_prints_the_same_sentence(tmp_path):
    from rich.console import Console

    from bench.reporting.terminal import print_dice_table

    runs = tmp_path / "runs"
    for method, liver in (("tpmamba", 0.9), ("masam", 0.7), ("samed", 0.5)):
        write_finished_run(runs, "25pct", method, 0, liver=liver)
    console = Console(record=True, width=200)
    print_dice_table(console, runs, ["tpmamba", "masam"], "25pct", "caption")
    assert "cannot show" not in console.export_text()  # two methods: one pair can reach 2/2^6 < 0.05
    print_dice_table(console, runs, ["tpmamba", "masam", "samed"], "25pct", "caption")
    text = console.export_text()
    assert "6 test cases cannot show a difference between 3 methods at alpha 0.05 after Holm's correction over 3 pairs" in text


def test_compute_table_uses_flops_and_speed_json_saved_in_the_runs_folder(grid_folder):
    flops = {
        "unit": "GMACs",
        "input": 96,
        "rank": 96,
        "adapters": [
            {"name": "lora", "gmacs_per_block": 1.0, "ratio_to_lora": 1.0},
            {"name": "tpmamba", "gmacs_per_block": 2.5, "ratio_to_lora": 2.5},
        ],
        "methods": [
            {"name": "tpmamba", "params_total": 102_420_000, "params_trainable": 12_750_000, "gmacs": 727.4, "published_gmacs": None}
        ],
    }
    speed = {"device": "cpu", "hardware": {"cpu": "test cpu"}, "profile": "smoke", "input": 32, "loader_crops_per_s": 50.0}
    speed["methods"] = [{"name": "tpmamba", "train_step_s": 0.123, "sliding_window_s": 1.5, "peak_memory_mib": 800.0}]
    write_json(grid_folder / "flops.json", flops)
    write_json(grid_folder / "speed.json", speed)
    assert invoke("report", grid_folder).exit_code == 0
    html = (grid_folder / "report" / "report.html").read_text()
    assert "727.4" in html and "102.42" in html and "0.123" in html and "flops.json" in html
    assert (grid_folder / "report" / "fig1c_adapters.png").exists()


def test_report_on_an_empty_or_missing_folder_exits_2(tmp_path):
    result = invoke("report", tmp_path)
    assert result.exit_code == 2 and "no runs under" in result.output
    missing = invoke("report", tmp_path / "nope")
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_run_file_that_lacks_a_field_is_named_not_shown_as_n_a(grid_folder):
    run_dir = grid_folder / "25pct" / "tpmamba" / "repeat0"
    config = read_json(run_dir / CONFIG_FILE)
    del config["provenance"]["code_revision"], config["params_trainable"]
    write_json(run_dir / CONFIG_FILE, config)
    result = invoke("report", grid_folder)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "config.json" in result.output and "params_trainable" in result.output
    assert not (grid_folder / "report" / "report.html").exists()


def test_a_summary_reads_back_as_written_with_nan_for_organs_in_neither_volume(grid_folder):
    summary = RunSummary.read(grid_folder / "12pct" / "masam" / "repeat0" / SUMMARY_FILE)
    assert summary.method == "masam" and summary.repeat == 0 and len(summary.metric_per_case) == 6
    assert math.isnan(summary.metric_per_case[0].metrics["spleen"]["dice"]) and math.isnan(summary.mean["spleen"]["dice"])
    assert summary.metric_per_case[2].metrics["stomach"]["dice"] == pytest.approx(0.5)
    assert summary.mean["liver"]["dice"] == pytest.approx(0.6)


def _tool(name: str) -> str | None:
    path = shutil.which(name)
    if path is None and REQUIRE_TOOLS:
        pytest.fail(f"{name} is required here (BENCH_REQUIRE_REPORT_TOOLS=1) but not installed")
    return path


def test_latex_fragments_compile(grid_folder, tmp_path):
    assert invoke("report", grid_folder).exit_code == 0
    for name in ("table1.tex", "table1_compact.tex"):
        fragment = (grid_folder / "report" / name).read_text()
        body = "\n".join(line for line in fragment.splitlines() if not line.startswith("%"))
        assert body.count("{") == body.count("}")
        rows = [line for line in body.splitlines() if line.endswith("\\\\") and "multicolumn" not in line]
        assert rows and all(line.count("&") == 14 for line in rows), rows  # 13 organs + Avg after the method
        pdflatex = _tool("pdflatex")
        if pdflatex is None:
            continue
        doc = tmp_path / name.replace(".tex", "_doc.tex")
        preamble = "\\documentclass{article}\\usepackage{booktabs,xcolor}\\usepackage[margin=1cm,landscape]{geometry}\n"
        doc.write_text(preamble + f"\\begin{{document}}\n\\input{{{grid_folder / 'report' / name}}}\n\\end{{document}}\n")
        done = subprocess.run(
            [pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout[-2000:]
        assert (tmp_path / doc.name.replace(".tex", ".pdf")).stat().st_size > 1000


class _DomCollector(HTMLParser):
    """Tables (id -> rows of cell texts and classes), images and failed-run lines of a serialised DOM."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.failed, self.attrs, self.row_attrs = {}, [], [], {}, {}
        self._table = self._row = self._cell = None
        self._in_failed = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.row_attrs[id(self._row)] = attrs
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"text": "", "class": attrs.get("class") or ""}
            self._row.append(self._cell)
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "p" and "failed-run" in (attrs.get("class") or ""):
            self._in_failed = True
            self.failed.append("")
        elif tag == "body":
            self.attrs = attrs

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "p":
            self._in_failed = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_failed:
            self.failed[-1] += data


# Runs in the page after load: records what the browser decoded and laid out, so the DOM it dumps
# carries the images' decoded sizes and the tables' rendered widths.
PROBE = """<script>window.addEventListener('load', () => {
  for (const img of document.images) { img.dataset.decoded = img.naturalWidth + 'x' + img.naturalHeight;
    img.dataset.shown = Math.round(img.getBoundingClientRect().width); }
  for (const t of document.querySelectorAll('table')) t.dataset.shownWidth = Math.round(t.getBoundingClientRect().width);
  document.body.dataset.probed = 'yes';
});</script>"""


def test_html_report_in_headless_chromium_shows_the_tables_and_images(grid_folder, tmp_path):
    assert invoke("report", grid_folder).exit_code == 0
    chromium = _tool("chromium") or _tool("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here (CI installs Debian's chromium)")
    page = tmp_path / "probed.html"
    page.write_text((grid_folder / "report" / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"]
    done = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _DomCollector()
    dom.feed(done.stdout)
    assert dom.attrs.get("data-probed") == "yes", "the page's load event never fired"
    rows = dom.tables["table1-25pct"]
    assert [c["text"] for c in rows[0]][:2] == ["Method", "Sple"] and len(rows[0]) == 15
    by_method = {dom.row_attrs[id(r)]["data-method"]: r for r in rows[1:]}
    liver = by_method["tpmamba"][6]
    assert liver["class"] == "best" and liver["text"].startswith("85.0") and "7.1" in liver["text"]
    assert by_method["masam"][6]["class"] == "second"
    assert "1 failed" in by_method["masam"][0]["text"]
    assert [c["text"] for c in dom.tables["table1-12pct"][2]][1:] == ["-"] * 14  # tpmamba at 12%: no draw finished
    assert any("NaN at epoch 2" in line for line in dom.failed)
    states = [r[3]["text"] for r in dom.tables["grid-status"][1:]]
    assert states.count("done") == 4 and states.count("failed") == 1 and states.count("missing") == 15
    assert len(dom.images) == 5
    hd95_liver = {dom.row_attrs[id(r)]["data-method"]: r[6] for r in dom.tables["hd95-25pct"][1:]}
    assert hd95_liver["tpmamba"]["class"] == "best" and hd95_liver["tpmamba"]["text"].startswith("3.0")
    assert "nsd-25pct" in dom.tables and "hd95-12pct" in dom.tables
    boot = dom.tables["bootstrap-25pct"]
    assert [c["text"] for c in boot[0]] == ["Method", "cases", "draws", "mean Dice", "95% CI", "P(rank 1)", "P(rank 2)"]
    assert [[c["text"] for c in r[:3]] for r in boot[1:]] == [["tpmamba", "6", "1"], ["masam", "6", "1"]]
    pair = dom.tables["pairwise-25pct"][1]
    assert [c["text"] for c in pair[:4]] == ["tpmamba", "masam", "6", "1"] and pair[-1]["text"].endswith("*")
    assert pair[6]["text"] == "exact, mid-ranks for tied differences"  # every case differs by the same amount
    extra = {dom.row_attrs[id(r)]["data-method"]: [c["text"] for c in r] for r in dom.tables["hd95-extra-25pct"][1:]}
    assert extra["tpmamba"] == ["tpmamba", "9.0", "10.0", "0 of 156", "0"] and extra["masam"][3] == "0 of 78"
    for img in dom.images:
        width, height = (int(v) for v in img["data-decoded"].split("x"))
        assert width > 200 and height > 100 and int(img["data-shown"]) > 200, img.get("alt")


def test_a_report_never_asks_the_scheduler(grid_folder, monkeypatch):
    """A run handed to a SLURM job is shown as its run files say; only bench status asks squeue."""
    import bench.runs.claim
    from bench.reporting.data import load_report_data

    submitted = grid_folder / "25pct" / "masam" / "repeat2"
    write_json(submitted / "submitted.json", {"job_id": "77_2", "logs": "/nowhere"})
    asked = []
    monkeypatch.setattr(bench.runs.claim, "slurm_job_state", lambda job_id: asked.append(job_id) or "PENDING")
    states = {(s.method, s.repeat): s for s in load_report_data(grid_folder).states if s.data == "25pct"}
    assert not asked and states[("masam", 2)].state == "running" and "77_2" in states[("masam", 2)].reason
    assert invoke("status", grid_folder).exit_code == 0 and asked == ["77_2"]
