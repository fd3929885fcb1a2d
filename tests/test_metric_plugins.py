"""Metrics are data: a metric an installed package registers (entry-point group
``sam3d_bench.metrics``) is scored, written to results.csv and shown in the tables and the report
without a line of bench changed; a runs folder scored before it existed still resumes, reports (the
metric "not scored" for its old runs) and rescores (``bench score`` on its saved predictions)."""

from __future__ import annotations

import csv
import json
import sys

import nibabel as nib
import numpy as np
import pytest

from bench.evaluation import scores
from methods import plugins
from tests.conftest import invoke

# A test-only plugin: the relative volume error of an organ, in %, lower is better; 100 % when the
# prediction misses the organ or predicts one the reference lacks.
PLUGIN = """
import numpy as np
from sam3d_bench import Metric, register_metric

def volume_error(masks):
    predicted, reference = np.count_nonzero(masks.prediction), np.count_nonzero(masks.reference)
    return abs(predicted - reference) / reference

register_metric(Metric("vol_err", "Volume error (%)", "%", 100.0, True, volume_error, 1.0, "1 (100 %)",
                       "The predicted volume's difference from the reference's, relative to the reference's."))
"""


@pytest.fixture
def metric_site(tmp_path, monkeypatch):
    """A folder on sys.path for the plugin's module and dist-info; the metric registry and the
    plugin loader start from the built-ins and are restored afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(scores, "_REGISTERED", {m.name: m for m in scores.BUILT_IN_METRICS})
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setenv(plugins.PLUGIN_ENV, "")
    plugins._distributions.cache_clear()
    yield site
    sys.modules.pop("plug_volume", None)
    plugins._distributions.cache_clear()


def install_metric_plugin(site, module_text: str = PLUGIN) -> None:
    """What pip leaves for a distribution declaring a metric entry point, then a fresh plugin load."""
    (site / "plug_volume.py").write_text(module_text)
    info = site / "sam3d_volume-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sam3d-volume\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{plugins.METRIC_ENTRY_POINT_GROUP}]\nvol_err = plug_volume\n")
    (info / "top_level.txt").write_text("plug_volume\n")
    plugins._distributions.cache_clear()
    plugins._loaded = False


def test_a_metric_named_twice_is_one_line_naming_both(metric_site):
    install_metric_plugin(metric_site, PLUGIN.replace('"vol_err"', '"dice"'))
    result = invoke("list")
    assert result.exit_code == 2 and "metric 'dice' is registered twice (built-in, and plugin sam3d-volume 0.1.0)" in result.output


def test_report_takes_a_metric_module_by_plugin_and_names_runs_scored_before_it(metric_site, tmp_path):
    from tests.conftest import write_finished_run

    (metric_site / "plug_volume.py").write_text(PLUGIN)  # importable, not installed: --plugin names it
    runs = tmp_path / "runs"
    write_finished_run(runs, "12pct", "unetr", 0, liver=0.9)
    plugins._loaded = False  # as in a fresh process: writing the run read the metric registry
    result = invoke("report", runs, "--plugin", "plug_volume")
    assert result.exit_code == 0, result.output
    html = (runs / "report" / "report.html").read_text()
    assert '<h2 id="vol_err">Volume error (%) on the test cases</h2>' in html and 'id="vol_err-unscored"' in html
    assert "unetr 12pct #0" in html and (runs / "report" / "table_vol_err.md").exists()


def rows_of(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_plugin_metric_reaches_results_tables_and_report_and_old_runs_still_work(metric_site, tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr", "--data", "12pct", "--data-root", tiny_synthetic, "--out", out]
    args += ["--profile", "smoke", "--device", "cpu", "--epochs", "1", "--save-predictions"]
    before = invoke(*args, "--repeats", "0")  # scored before the metric exists
    assert before.exit_code == 0, before.output
    assert "vol_err" not in rows_of(out / "results.csv")[0]

    install_metric_plugin(metric_site)
    assert [m.name for m in scores.metric_specs()] == ["dice", "nsd", "hd95", "vol_err"]
    assert scores.get_metric("vol_err").source.describe() == "plugin sam3d-volume 0.1.0"
    # Resumes: the finished draw is read (not refused) and skipped, the new one is scored with the metric.
    after = invoke(*args, "--repeats", "0,1")
    assert after.exit_code == 0, after.output
    assert "finished earlier, skipped" in after.output
    rows = rows_of(out / "results.csv")
    assert list(rows[0])[5:] == ["dice", "nsd", "hd95", "vol_err", "n_ref", "n_pred"]
    assert {r["vol_err"] for r in rows if r["repeat"] == "0"} == {""}  # not scored
    scored = [r for r in rows if r["repeat"] == "1" and r["vol_err"]]
    assert scored
    # The value is the plugin's formula on the run's own predictions and label files.
    summary = json.loads((out / "12pct/unetr/repeat1/summary.json").read_text())
    case, organ = summary["metric_per_case"][0]["case"], "liver"
    prediction = np.asarray(nib.load(str(out / f"12pct/unetr/repeat1/predictions/label{case}.nii.gz")).dataobj)
    reference = np.asarray(nib.load(str(tiny_synthetic / f"RawData/Training/label/label{case}.nii.gz")).dataobj)
    value = 6  # liver
    expected = abs(np.count_nonzero(prediction == value) - np.count_nonzero(reference == value)) / np.count_nonzero(reference == value)
    assert summary["metric_per_case"][0]["metrics"][organ]["vol_err"] == pytest.approx(expected if (prediction == value).any() else 1.0)
    assert "vol_err 1 (100 %)" in summary["metric_convention"]

    report = out / "report"
    table = (report / "table_vol_err.md").read_text()
    assert "# Volume error (%) on the test cases" in table and "Best (lowest)" in table
    assert "| unetr (2 of 5 draws; 3 missing; vol_err scored in 1 of them) |" in table  # its mean is draw 1's alone
    html = (report / "report.html").read_text()
    assert '<h2 id="vol_err">Volume error (%) on the test cases</h2>' in html and 'id="vol_err-12pct"' in html
    assert 'id="vol_err-unscored"' in html and "unetr 12pct #0" in html

    # Rescores: the old draw's saved predictions scored again carry the metric.
    rescored = invoke(
        "score", out / "12pct/unetr/repeat0/predictions", "--method", "unetr-rescored", "--data", "12pct", "--repeat", "0",
        "--data-root", tiny_synthetic, "--out", out,
    )  # fmt: skip
    assert rescored.exit_code == 0, rescored.output
    again = {r["case"] + r["organ"]: r for r in rows_of(out / "results.csv") if r["method"] == "unetr-rescored"}
    old = {r["case"] + r["organ"]: r for r in rows_of(out / "results.csv") if r["method"] == "unetr" and r["repeat"] == "0"}
    assert all(again[k]["vol_err"] != "" or again[k]["dice"] == "" for k in again)
    assert all(again[k]["dice"] == old[k]["dice"] for k in old)  # the same predictions, the same Dice
