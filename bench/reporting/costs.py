"""The report's "Cost beside accuracy" section, from what each run recorded (summary.json's cost,
config.json's parameters and GMACs): nothing is built or timed while reporting (docs/costs.md).

- Per device: runs measured on different devices never share a table. Each method and fraction's
  measured step time, peak memory and device-hours sit beside its average Dice.
- The Pareto fronts of average Dice against GMACs and against measured device-hours.
- Compute-matched pairs (nnU-Net Revisited): each method beside the compute-reference run (nnU-Net
  v2 and its ResEnc presets, ``MethodInfo.compute_reference``) closest to it in measured peak
  training memory on the same device and fraction, with that pair's test from the statistics section.
- The paper's Figure 1(c) numbers beside ``bench flops``'s, when its JSON is in the folder.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.runs.costs import RunCost, highest, shape_text
from bench.runs.results import draw_table
from reports import paper_figure1c

if TYPE_CHECKING:  # the report's data is handed in; reading it is bench.reporting.data's
    from bench.reporting.data import ReportData

NOT_RECORDED = "not recorded"  # the device group of runs scored before runs recorded their cost
FIGURE_1C_INPUT, FIGURE_1C_RANK = 96, 96  # where the paper's Figure 1(c) counts


@dataclass
class CostRow:
    """One method at one fraction on one device: its draws' recorded costs and their average Dice."""

    data: str
    method: str
    draws: int
    params_total: int | None
    params_trainable: int | None
    gmacs: float | None
    gmacs_input: str | None
    step_s: float | None  # median over draws of each draw's median step
    peak_train_mib: float | None  # the highest of the draws
    peak_evaluate_mib: float | None
    hours_per_run: float | None
    hours: float | None
    dice: float  # average Dice (%): per draw the mean over organs, then the mean over these draws
    mixed: bool  # a draw's sessions ran on more than one device
    reference: bool  # a compute-matched baseline


@dataclass
class DeviceGroup:
    device: str
    rows: list[CostRow] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.device != NOT_RECORDED

    @property
    def hours(self) -> float:
        return sum(r.hours or 0.0 for r in self.rows)

    @property
    def runs(self) -> int:
        return sum(r.draws for r in self.rows)


def _median(values) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def cost_groups(data: ReportData, order: list[str]) -> list[DeviceGroup]:
    """Every finished run's cost by device, fraction and method (the paper's order); the device
    with most runs first and the runs without a recorded cost last."""
    dice = draw_table(data.results, "dice", data.labels)["Avg"] if not data.results.empty else {}
    draws: dict[tuple[str, str, str], list[tuple[int, RunCost | None]]] = defaultdict(list)
    for (fraction, method, repeat), cost in data.costs.items():
        draws[(cost.device if cost else NOT_RECORDED, fraction, method)].append((repeat, cost))
    groups: dict[str, DeviceGroup] = {}
    for (device, fraction, method), runs in draws.items():
        costs = [c for _, c in runs if c is not None]
        configs = [data.configs[(fraction, method, r)] for r, _ in runs if (fraction, method, r) in data.configs]
        config = configs[0] if configs else None
        scores = [dice.get((fraction, method, r), math.nan) for r, _ in runs]
        scores = [s for s in scores if s == s]
        hours = sum(c.device_hours for c in costs) if costs else None
        row = CostRow(
            data=fraction,
            method=method,
            draws=len(runs),
            params_total=config.params_total if config else None,
            params_trainable=config.params_trainable if config else None,
            gmacs=config.gmacs if config else None,
            gmacs_input=shape_text(config.gmacs_input) if config else None,
            step_s=_median(c.step_seconds_median for c in costs),
            peak_train_mib=highest(c.peak_memory_train_mib for c in costs),
            peak_evaluate_mib=highest(c.peak_memory_evaluate_mib for c in costs),
            hours_per_run=hours / len(costs) if costs else None,
            hours=hours,
            dice=statistics.mean(scores) if scores else math.nan,
            mixed=any(c.mixed for c in costs),
            reference=bool(config and config.provenance.compute_reference),
        )
        groups.setdefault(device, DeviceGroup(device)).rows.append(row)
    fractions = list(data.protocol.fractions)
    for group in groups.values():
        group.rows.sort(
            key=lambda r: (fractions.index(r.data) if r.data in fractions else 99, order.index(r.method) if r.method in order else 99)
        )
    return sorted(groups.values(), key=lambda g: (not g.measured, -g.runs, g.device))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, score) points no other point beats: none is as cheap and as good, and
    strictly one of the two."""
    front = []
    for i, (cost, score) in enumerate(points):
        beaten = any(c <= cost and s >= score and (c < cost or s > score) for j, (c, s) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return front


def figure_panels(groups: list[DeviceGroup]) -> list[dict]:
    """What the cost figure draws: Dice against GMACs (the same on every device; each method and
    fraction once), and against device-hours per run on the device with most runs (another
    device's hours are never drawn on the same axis). Each point says whether it is on its
    fraction's Pareto front (``front``)."""
    measured = [g for g in groups if g.measured]
    seen, by_gmacs = set(), []
    for group in groups:
        for r in group.rows:
            if r.gmacs and r.dice == r.dice and (r.data, r.method) not in seen:
                seen.add((r.data, r.method))
                by_gmacs.append({"method": r.method, "data": r.data, "x": r.gmacs, "y": r.dice})
    panels = [{"x_label": "GMACs per forward (at each run's counted input)", "title": "Dice against GMACs", "points": by_gmacs}]
    if measured:
        main = measured[0]
        points = [
            {"method": r.method, "data": r.data, "x": r.hours_per_run, "y": r.dice}
            for r in main.rows
            if r.hours_per_run and r.dice == r.dice
        ]
        others = sum(g.runs for g in measured[1:])
        title = f"Dice against device-hours on {main.device}" + (f" ({others} runs on other devices not drawn)" if others else "")
        panels.append({"x_label": "device-hours per run (measured)", "title": title, "points": points})
    for panel in panels:
        for fraction in {p["data"] for p in panel["points"]}:
            points = [p for p in panel["points"] if p["data"] == fraction]
            front = set(pareto_front([(p["x"], p["y"]) for p in points]))
            for i, point in enumerate(points):
                point["front"] = i in front
    # One method's points have nothing to be set against.
    return [p for p in panels if len({point["method"] for point in p["points"]}) > 1]


def compute_matched(groups: list[DeviceGroup], stats: list[dict]) -> tuple[list[dict], list[str]]:
    """Each method's closest compute reference in measured peak training memory (ratio on a log
    scale), on the same device and fraction, with the pair's Holm-adjusted test; and the sentences
    that say where no pair could be made."""
    references = [r for g in groups for r in g.rows if r.reference]
    if not references:
        return [], [
            "No nnU-Net v2 run is in this folder, so no method has a compute-matched baseline. nnU-Net Revisited asks that a "
            'new method be compared with the nnU-Net of similar compute: add --methods "nnunetv2,nnunetv2[planner=ResEncM],'
            'nnunetv2[planner=ResEncL]" on the same device.'
        ]
    tests = {(st["fraction"], t["first"], t["second"]): t for st in stats for t in st["tests"]}
    pairs, notes = [], []
    for group in (g for g in groups if g.measured):
        for fraction in dict.fromkeys(r.data for r in group.rows):
            rows = [r for r in group.rows if r.data == fraction and r.peak_train_mib]
            refs, others = [r for r in rows if r.reference], [r for r in rows if not r.reference]
            if others and not refs:
                notes.append(f"No nnU-Net v2 run at {fraction} on {group.device}: its methods there have no compute-matched baseline.")
                continue
            for row in others:
                ref = min(refs, key=lambda c: abs(math.log(row.peak_train_mib / c.peak_train_mib)))
                test, sign = tests.get((fraction, row.method, ref.method)), 1
                if test is None and (test := tests.get((fraction, ref.method, row.method))) is not None:
                    sign = -1
                pairs.append(
                    {
                        "data": fraction,
                        "device": group.device,
                        "method": row.method,
                        "memory": row.peak_train_mib,
                        "reference": ref.method,
                        "reference_memory": ref.peak_train_mib,
                        "ratio": row.peak_train_mib / ref.peak_train_mib,
                        "dice": row.dice,
                        "reference_dice": ref.dice,
                        "mean_diff": sign * test["mean_diff"] if test else math.nan,
                        "p_holm": test["p_holm"] if test else math.nan,
                        "significant": bool(test and test["significant"]),
                        "cases": test["cases"] if test else 0,
                    }
                )
    return pairs, notes


def figure1c_beside(extras: dict) -> dict:
    """The paper's Figure 1(c) numbers (``reports.paper_figure1c``) beside those of the flops JSON in
    the folder, when it counted where the paper did."""
    flops = extras.get("flops") or {}
    paper = paper_figure1c()
    where = (flops.get("input"), flops.get("rank"), flops.get("slice_scale", 1))
    ours = {r["name"]: r for r in flops.get("adapters") or []} if where == (FIGURE_1C_INPUT, FIGURE_1C_RANK, 1) else {}
    rows = [
        {
            "adapter": name,
            "title": published["title"],
            "paper_gmacs": published["gmacs_per_block"],
            "ours_gmacs": ours.get(name, {}).get("gmacs_per_block"),
            "paper_ratio": published["ratio_to_lora"],
            "ours_ratio": ours.get(name, {}).get("ratio_to_lora"),
        }
        for name, published in paper.items()
    ]
    return {"rows": rows, "counted": bool(ours), "found": bool(flops), "where": where, "file": extras.get("flops_file")}


MARKDOWN_COLUMNS = (
    "Fraction",
    "Method",
    "draws",
    "params (M)",
    "trainable (M)",
    "GMACs",
    "step (s)",
    "peak train (MiB)",
    "peak test (MiB)",
    "device-h per run",
    "Avg Dice (%)",
)


def cost_markdown(groups: list[DeviceGroup]) -> str:
    """The measured table as Markdown (report/table_costs.md), one table per device."""

    def num(value, fmt: str) -> str:
        return "-" if value is None or value != value else format(value, fmt)

    lines = []
    for group in groups:
        lines += [f"**{group.device}**" + (f": {group.hours:.3g} device-hours for {group.runs} runs" if group.measured else ""), ""]
        lines += ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|---" * len(MARKDOWN_COLUMNS) + "|"]
        for r in group.rows:
            params = [num(v / 1e6 if v is not None else None, ".2f") for v in (r.params_total, r.params_trainable)]
            cells = [r.data, r.method, str(r.draws), *params, num(r.gmacs, ".3g"), num(r.step_s, ".3g"), num(r.peak_train_mib, ".0f")]
            cells += [num(r.peak_evaluate_mib, ".0f"), num(r.hours_per_run, ".3g"), num(r.dice, ".1f")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
