"""What each run cost: sessions measured and summed, costs.csv, and the report's "Cost beside
accuracy" section (tables per device, the Pareto figure, compute-matched pairs, Figure 1(c))."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from bench.runs.costs import RunCost, SessionCost, device_label, read_sessions, weighted_median
from bench.runs.files import SESSIONS_FILE
from tests.conftest import invoke, write_finished_run

H100 = device_label("cuda", "NVIDIA H100 80GB HBM3", 16)
CPU = device_label("cpu", "Intel(R) Xeon(R) Processor", 2)


def session(train: float, *, steps=100, step=0.5, peak=1000.0, device=H100, outcome="finished", evaluate=60.0, processes=1):
    return SessionCost(
        started="2026-12-07T00:00:00+00:00",
        outcome=outcome,
        device=device,
        host="node1",
        setup_seconds=10.0,
        train_seconds=train,
        evaluate_seconds=evaluate,
        processes=processes,
        steps=steps,
        step_seconds_median=step,
        peak_memory_train_mib=peak,
        peak_memory_evaluate_mib=peak / 2,
        memory_kind="cuda_allocated",
    )


def test_a_runs_cost_is_the_sum_of_its_sessions():
    stopped = session(1000.0, steps=300, step=0.4, peak=9000.0, outcome="stopped", evaluate=None)
    finished = session(2000.0, steps=100, step=0.6, peak=8000.0, processes=2)
    cost = RunCost.of([stopped, finished])
    assert cost.sessions == 2 and cost.train_seconds == 3000.0 and cost.setup_seconds == 20.0 and cost.evaluate_seconds == 60.0
    assert cost.steps == 400 and cost.step_seconds_median == 0.4  # 300 of the 400 steps took 0.4 s
    assert cost.peak_memory_train_mib == 9000.0 and cost.peak_memory_evaluate_mib == 4500.0
    # Every session's wall time, times its processes.
    assert cost.device_hours == pytest.approx((10 + 1000) / 3600 + 2 * (10 + 2000 + 60) / 3600)
    assert cost.device == H100 and not cost.mixed
    moved = RunCost.of([stopped, session(5.0, device=CPU)])
    assert moved.mixed and moved.device == f"{H100} + {CPU}"


def test_the_weighted_median_is_the_median_of_every_step():
    rng = np.random.default_rng(0)
    groups = [rng.random(n) for n in (7, 30, 2)]
    # Each group stands in for a session whose steps all took its median: then the weighted median is exact.
    pairs = [(float(np.median(g)), len(g)) for g in groups]
    flat = [value for value, n in pairs for _ in range(n)]
    assert weighted_median(pairs) == sorted(flat)[(len(flat) - 1) // 2]
    assert weighted_median([]) is None


def test_a_session_stopped_mid_phase_records_its_time_and_the_memory_it_held(tmp_path):
    from bench.pipelines.metering import SessionMeter

    meter = SessionMeter("cpu", 2, 1)
    with meter.phase("setup", memory=False):
        pass
    with pytest.raises(KeyboardInterrupt), meter.phase("train"):
        held = np.ones(400 * 2**20 // 8)  # 400 MiB, resident once written
        raise KeyboardInterrupt
    recorded = meter.record(tmp_path, "stopped", [0.2, 0.1, 0.3])
    assert meter.record(tmp_path, "failed", None) is None  # one record per session
    del held
    [read] = read_sessions(tmp_path / SESSIONS_FILE)
    assert read == recorded and read.outcome == "stopped" and read.evaluate_seconds is None
    assert read.steps == 3 and read.step_seconds_median == 0.2 and read.train_seconds > 0
    assert read.peak_memory_train_mib >= 400 and read.memory_kind in ("process_peak_rss", "process_max_rss")
    assert read.device.endswith("(cpu, 2 threads)") and read.processes == 1


def test_a_session_killed_outright_is_counted_by_the_next_from_its_mark(tmp_path):
    import os
    import time

    from bench.io import write_json
    from bench.pipelines.metering import SessionMeter
    from bench.runs.files import SESSION_MARK

    # What a session killed 100 s after it began leaves behind: its mark, last touched then.
    mark, began = tmp_path / SESSION_MARK, time.time() - 1000
    write_json(mark, {"started": "2026-12-07T00:00:00+00:00", "started_s": began, "device": H100, "host": "node1", "processes": 2})
    os.utime(mark, (began + 100, began + 100))
    meter = SessionMeter("cpu", 2, 1)
    meter.begin(tmp_path)
    assert mark.exists() and mark.stat().st_mtime > began + 900  # this session's own mark now
    meter.record(tmp_path, "finished", None)
    assert not mark.exists()
    killed, finished = read_sessions(tmp_path / SESSIONS_FILE)
    assert (killed.outcome, killed.device, killed.processes, killed.train_seconds, killed.steps) == ("killed", H100, 2, 100.0, None)
    assert finished.outcome == "finished" and RunCost.of([killed, finished]).device_hours == pytest.approx(2 * 100 / 3600, abs=1e-3)


def test_gmacs_are_counted_as_bench_flops_counts_them_or_left_out():
    import torch

    from bench.pipelines.metering import counted_gmacs
    from methods.macs import count_macs

    conv = torch.nn.Conv3d(1, 16, 3, padding=1, bias=False)
    expected = 16 * 27 * 32**3 / 1e9  # one multiply-add per weight per output voxel
    assert counted_gmacs(conv, (32, 32, 32)) == pytest.approx(expected, rel=1e-5)
    assert counted_gmacs(conv, (32, 32, 32)) == pytest.approx(count_macs(conv, torch.rand(1, 1, 32, 32, 32)).gmacs, rel=1e-5)

    class TwoInputs(torch.nn.Module):  # a network the single patch does not fit
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x, y):
            return x * self.w + y

    assert counted_gmacs(TwoInputs(), (4, 4, 4)) is None


def test_a_grids_draws_share_one_count_of_the_same_network(monkeypatch):
    import torch

    import methods.macs
    from bench.pipelines.metering import counted_gmacs

    traced = []
    count = methods.macs.count_macs
    monkeypatch.setattr(methods.macs, "count_macs", lambda *a: traced.append(1) or count(*a))
    draws = [torch.nn.Conv3d(1, 4, 3, padding=1) for _ in range(3)]  # three draws: the same network, other weights
    assert len({counted_gmacs(net, (16, 16, 16), identity="a") for net in draws}) == 1 and len(traced) == 1
    counted_gmacs(torch.nn.Conv3d(1, 5, 3, padding=1), (16, 16, 16), identity="a")  # another network
    counted_gmacs(draws[0], (16, 16, 16), identity="a[k=v]")  # another variant of the method
    counted_gmacs(draws[0], (8, 16, 16), identity="a")  # another patch
    assert len(traced) == 4


def test_pareto_front():
    from bench.reporting.costs import pareto_front

    points = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (0.5, 40.0), (2.0, 60.0), (1.0, 45.0)]
    assert pareto_front(points) == [0, 1, 3, 4]  # (3, 55) costs more for less; (1, 45) is (1, 50)'s worse twin
    assert pareto_front([]) == []


@pytest.fixture
def costed_folder(tmp_path):
    """12pct on an H100: tpmamba (2 draws, 20 GB), masam (30 GB), nnunetv2 (9 GB) and its ResEnc L
    preset (24 GB) as compute references, unetr from before costs were recorded; 25pct: masam on a CPU."""
    runs = tmp_path / "runs"
    for repeat, liver in ((0, 0.9), (1, 0.8)):
        write_finished_run(runs, "12pct", "tpmamba", repeat, liver=liver, shift=0.1, sessions=[session(3600.0, peak=20000.0)], gmacs=300.0)
    write_finished_run(
        runs, "12pct", "masam", 0, liver=0.7, sessions=[session(1800.0, peak=30000.0), session(1800.0, peak=29000.0)], gmacs=900.0
    )
    write_finished_run(
        runs, "12pct", "nnunetv2", 0, liver=0.6, sessions=[session(7200.0, peak=9000.0)], gmacs=500.0, compute_reference=True
    )
    label = "nnunetv2[planner=ResEncL]"
    write_finished_run(runs, "12pct", label, 0, liver=0.75, sessions=[session(9000.0, peak=24000.0)], gmacs=2000.0, compute_reference=True)
    write_finished_run(runs, "12pct", "unetr", 0, liver=0.5)
    write_finished_run(runs, "25pct", "masam", 0, liver=0.7, sessions=[session(100.0, peak=3000.0, device=CPU)], gmacs=1.0)
    return runs


def test_costs_csv_has_a_row_for_every_finished_run(costed_folder):
    from bench.runs.results import write_results_csv

    write_results_csv(costed_folder)
    with open(costed_folder / "costs.csv") as fh:
        rows = {(r["data"], r["method"], r["repeat"]): r for r in csv.DictReader(fh)}
    assert len(rows) == 7
    masam = rows[("12pct", "masam", "0")]
    assert float(masam["train_seconds"]) == 3600.0 and masam["sessions"] == "2" and float(masam["peak_memory_train_mib"]) == 30000.0
    assert float(masam["gmacs"]) == 900.0 and masam["gmacs_input"] == "32x32x32" and masam["params_total"] == "1500000"
    old = rows[("12pct", "unetr", "0")]
    assert old["train_seconds"] == old["device_hours"] == old["gmacs"] == "" and old["params_total"] == "1500000"


class _Tables(HTMLParser):
    """Every table with an id: a list of rows, each {header text: cell text}."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._id, self._header, self._row, self._text = None, [], None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._id, self._header = dict(attrs).get("id"), []
            if self._id:
                self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._text = ""

    def handle_data(self, data):
        if self._text is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._text is not None:
            self._row.append(" ".join(self._text.split()))
            self._text = None
        elif tag == "tr" and self._row is not None:
            if not self._header:
                self._header = self._row
            else:
                self.tables[self._id].append(dict(zip(self._header, self._row, strict=True)))
            self._row = None
        elif tag == "table":
            self._id = None


def test_the_report_sets_cost_beside_dice_per_device_with_compute_matched_pairs(costed_folder, monkeypatch):
    import bench.costs.speed
    import methods.macs
    import methods.registry

    def forbidden(*args, **kwargs):
        raise AssertionError("the report built, counted or timed a model")

    # bench report reads what the runs recorded: building, counting or timing a network fails the test.
    for module, name in ((methods.registry, "create_model"), (methods.macs, "count_macs"), (bench.costs.speed, "measure")):
        monkeypatch.setattr(module, name, forbidden)
    # bench flops --json saved in the folder, counted where the paper's Figure 1(c) counts (its own
    # figures are test_flops's; here, that the report puts them beside the paper's).
    adapters = [
        {"name": "lora", "gmacs_per_block": 1.019, "ratio_to_lora": 1.0},
        {"name": "sa", "gmacs_per_block": 18.855, "ratio_to_lora": 18.5},
    ]
    flops = {"unit": "GMACs", "input": 96, "rank": 96, "slice_scale": 1, "adapters": adapters, "vit_blocks": {}, "methods": []}
    (costed_folder / "flops.json").write_text(json.dumps(flops))
    result = invoke("report", costed_folder)
    assert result.exit_code == 0, result.output
    report = costed_folder / "report"
    html = (report / "report.html").read_text()
    assert f"On {H100}:" in html and f"On {CPU}:" in html and "Cost not recorded" in html
    tables = _Tables(html).tables
    gpu, cpu, old = ({r["Method"]: r for r in tables[f"costs-{k}"]} for k in (1, 2, 3))  # most runs first, no cost last
    assert float(gpu["masam"]["device-hours"]) == pytest.approx(2 * (10 + 1800 + 60) / 3600, rel=5e-3)  # 3 significant figures
    assert gpu["tpmamba"]["draws"] == "2" and gpu["tpmamba"]["peak memory training (MiB)"] == "20000"
    assert list(cpu) == ["masam"] and cpu["masam"]["peak memory training (MiB)"] == "3000"  # never in the H100's table
    assert list(old) == ["unetr"] and old["unetr"]["step (s, median)"] == "-" and old["unetr"]["Avg Dice (%)"] != "-"
    assert (report / "cost_vs_dice.png").stat().st_size > 0 and 'id="fig-cost"' in html

    pairs = {row["Method"]: row for row in tables["compute-matched-table"]}
    # By memory on a log scale: 20 GB and 30 GB are both nearest ResEnc L's 24 GB, not the default's 9 GB.
    assert set(pairs) == {"tpmamba", "masam"} and {p["nnU-Net v2 run"] for p in pairs.values()} == {"nnunetv2[planner=ResEncL]"}
    tests = pd.read_csv(report / "pairwise_tests.csv")
    pair = {"tpmamba", "nnunetv2[planner=ResEncL]"}
    [row] = [r for r in tests.to_dict("records") if r["data"] == "12pct" and {r["first"], r["second"]} == pair]
    sign = 1 if row["first"] == "tpmamba" else -1
    assert float(pairs["tpmamba"]["mean diff per case (pts)"]) == pytest.approx(sign * row["mean_diff"], abs=0.051)
    assert f"No nnU-Net v2 run at 25pct on {CPU}" in html  # its masam has no baseline on that device
    [beside] = tables["figure1c-table"]
    assert beside["Adapter"] == "self-attention adapter (sa)" and (beside["paper GMACs per block"], beside["ours GMACs"]) == (
        "18.86",
        "18.86",
    )
    assert (beside["paper: times LoRA's"], beside["ours: times LoRA's"]) == ("145", "18.5")

    # Without the preset, both are matched with the default planner's run.
    shutil.rmtree(costed_folder / "12pct" / "nnunetv2[planner=ResEncL]")
    assert invoke("report", costed_folder).exit_code == 0
    pairs = {row["Method"]: row for row in _Tables((report / "report.html").read_text()).tables["compute-matched-table"]}
    assert {p["nnU-Net v2 run"] for p in pairs.values()} == {"nnunetv2"} and pairs["masam"]["memory ratio"] == f"{30000 / 9000:.2f}"

    markdown = (report / "table_costs.md").read_text()
    assert f"**{H100}**" in markdown and "| 12pct | masam | 1 |" in markdown


def test_without_a_compute_reference_the_report_says_so(tmp_path):
    runs = tmp_path / "runs"
    write_finished_run(runs, "12pct", "tpmamba", 0, liver=0.9, sessions=[session(10.0)])
    write_finished_run(runs, "12pct", "masam", 0, liver=0.8, sessions=[session(20.0)])
    assert invoke("report", runs).exit_code == 0
    html = (runs / "report" / "report.html").read_text()
    assert "No nnU-Net v2 run is in this folder" in html and "compute-matched-table" not in html
    assert "Save <code>bench flops --input 96 --rank 96 --json" in html  # Figure 1(c): how to put ours beside the paper's


def test_device_hours_per_run_are_the_mean_of_its_draws(costed_folder):
    from bench.reporting.costs import cost_groups
    from bench.reporting.data import load_report_data, method_order

    data = load_report_data(costed_folder)
    [gpu, _, _] = cost_groups(data, method_order({m for _, m, _ in data.costs}, {}))
    tpmamba = next(r for r in gpu.rows if r.method == "tpmamba")
    each = (10 + 3600 + 60) / 3600
    assert tpmamba.hours == pytest.approx(2 * each) and tpmamba.hours_per_run == pytest.approx(each)
    assert tpmamba.dice == pytest.approx(statistics.mean(data.results.pipe(_avg_dice, "tpmamba")), rel=1e-9)
    # The H100's total, from the fixture's sessions: tpmamba 2 x 3600 s, masam 2 x 1800 s (one run),
    # nnunetv2 7200 s, ResEnc L 9000 s of training, each session with 10 s setup and 60 s testing.
    sessions = [3600, 3600, 1800, 1800, 7200, 9000]
    assert gpu.hours == pytest.approx(sum(10 + train + 60 for train in sessions) / 3600) and not math.isnan(tpmamba.dice)


def _avg_dice(results: pd.DataFrame, method: str) -> list[float]:
    """Per draw: each organ's mean over cases, then the mean over organs (NaN skipped), in percent."""
    df = results[results["method"] == method].assign(dice=lambda d: pd.to_numeric(d["dice"], errors="coerce"))
    return [100 * draw.groupby("organ")["dice"].mean().mean() for _, draw in df.groupby("repeat")]
