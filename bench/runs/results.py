"""Run summaries (nnU-Net style), the long results table and the paper-style per-organ table."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from bench.data.labels import BTCV_LABELS, ORGAN_COLUMNS, LabelSet
from bench.evaluation.metrics import nanmean
from bench.evaluation.scores import get_metric, metric_convention, metric_names
from bench.io import locked, write_text
from bench.runs.costs import COST_COLUMNS, RunCost, shape_text
from bench.runs.files import (
    CONFIG_FILE,
    COSTS_CSV,
    RESULTS_CSV,
    RESULTS_LOCK,
    SUMMARY_FILE,
    CaseScores,
    ConfigFile,
    RunFileError,
    RunSummary,
)

# The voxel counts of the organ in the reference and the prediction tell a missed organ (in the
# reference only) and a spurious one (in the prediction only) from a poor segmentation; both get
# HD95's penalty. Empty where a summary lacks them.
VOXEL_COUNTS = ("n_ref", "n_pred")
KEY_COLUMNS = ("method", "data", "repeat", "case", "organ")


def result_columns() -> tuple[str, ...]:
    """results.csv's columns: the keys, every registered metric (``bench.evaluation.scores``), the voxel counts."""
    return (*KEY_COLUMNS, *metric_names(), *VOXEL_COUNTS)


def organ_means(per_case: list[CaseScores]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per organ and metric, the mean over cases; per metric, the mean of those over organs.

    Means skip NaN (organ absent from both reference and prediction), as nnU-Net does.
    """
    organs = list(per_case[0].metrics) if per_case else []  # the run's label set, in value order
    scored = [m for m in metric_names() if all(m in case.metrics[organ] for case in per_case for organ in organs)]
    mean = {organ: {metric: nanmean(case.metrics[organ][metric] for case in per_case) for metric in scored} for organ in organs}
    foreground = {metric: nanmean(mean[organ][metric] for organ in organs) for metric in scored}
    return mean, foreground


def summarize(per_case: list[CaseScores], **header) -> RunSummary:
    """A run's summary: how it was scored (``header``: the other fields of RunSummary), per-case
    metrics and their means (``organ_means``)."""
    mean, foreground = organ_means(per_case)
    return RunSummary(metric_per_case=list(per_case), mean=mean, foreground_mean=foreground, **header)


def run_summary(
    run, provenance, profile_name: str, per_case: list[CaseScores], *, spacing_mm: float, seconds: dict, processes: int, cost=None
) -> RunSummary:
    """A planned run's summary: its identity from the plan, how it was scored, its per-case metrics."""
    return summarize(
        per_case,
        method=run.method,
        data=run.data,
        repeat=run.repeat,
        config_hash=run.hash,
        stamp=provenance.stamp,
        synthetic=provenance.synthetic,
        profile=profile_name,
        weights=run.config.weights,
        spacing_mm=spacing_mm,
        eval_space=run.config.eval_space,
        metric_convention=metric_convention(),
        nsd_tolerance_mm=run.config.nsd_tolerance_mm,
        train_cases=list(run.train_ids),
        seconds=seconds,
        processes=processes,
        cost=asdict(cost) if cost is not None else None,
    )


def finished_summaries(runs_dir: Path) -> list[tuple[Path, RunSummary]]:
    """Every summary.json under runs_dir/<data>/<method>/repeat<k>/, with its run folder."""
    return [(path.parent, RunSummary.read(path)) for path in sorted(Path(runs_dir).glob(f"*/*/repeat*/{SUMMARY_FILE}"))]


def collect_rows(runs_dir: Path, summaries: list[tuple[Path, RunSummary]] | None = None) -> list[dict]:
    """Long-format rows from every summary (``finished_summaries``)."""
    rows, metrics = [], metric_names()
    for _, summary in finished_summaries(runs_dir) if summaries is None else summaries:
        for case in summary.metric_per_case:
            for organ in summary.mean:
                rows.append(
                    {
                        "method": summary.method,
                        "data": summary.data,
                        "repeat": summary.repeat,
                        "case": case.case,
                        "organ": organ,
                        # A metric the run was scored before: empty, "not scored" (NaN, which an absent organ also gives).
                        **{metric: case.metrics[organ].get(metric) for metric in metrics},
                        **{count: case.metrics[organ].get(count) for count in VOXEL_COUNTS},
                    }
                )
    return rows


def write_results_csv(runs_dir: Path) -> Path:
    """Rebuild runs_dir/results.csv, and costs.csv beside it, from the summaries, so they never
    disagree with them.

    Each process writes its summary before it rebuilds, and rebuilds take turns under a lock, so
    with several runs writing to one folder (SLURM jobs, two terminals) the last rebuild has them all.
    """
    path = Path(runs_dir) / RESULTS_CSV
    with locked(Path(runs_dir) / RESULTS_LOCK):
        summaries = finished_summaries(runs_dir)
        write_text(path, _csv(result_columns(), collect_rows(runs_dir, summaries)))
        write_text(Path(runs_dir) / COSTS_CSV, _csv(COST_COLUMNS, [cost_row(summary, folder) for folder, summary in summaries]))
    return path


def cost_row(summary: RunSummary, run_dir: Path) -> dict[str, Any]:
    """costs.csv's row of a finished run: its cost (empty before runs recorded theirs) and its
    network's size from config.json (empty where that is gone)."""
    cost = RunCost.read(summary.cost)
    row: dict[str, Any] = {"method": summary.method, "data": summary.data, "repeat": summary.repeat, **(asdict(cost) if cost else {})}
    try:
        config = ConfigFile.read(Path(run_dir) / CONFIG_FILE)
        row.update(params_total=config.params_total, params_trainable=config.params_trainable, gmacs=config.gmacs)
        row["gmacs_input"] = shape_text(config.gmacs_input)
    except RunFileError:
        pass
    return {column: row.get(column) for column in COST_COLUMNS}


def cost_totals(runs_dir: Path) -> dict[str, tuple[int, float]]:
    """From costs.csv: per device, the runs measured on it and their device-hours."""
    path, totals = Path(runs_dir) / COSTS_CSV, {}
    if path.exists():
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row["device"]:
                    runs, hours = totals.get(row["device"], (0, 0.0))
                    totals[row["device"]] = (runs + 1, hours + float(row["device_hours"] or 0.0))
    return totals


def _csv(columns, rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()})
    return buffer.getvalue()


TABLE_COLUMNS = (*ORGAN_COLUMNS, "Avg")  # BTCV's; another label set's are (*labels.columns, "Avg")


def metric_scale(metric: str) -> float:
    """Stored value x scale = shown value (the metric's registration)."""
    return get_metric(metric).scale


def results_labels(results: pd.DataFrame) -> LabelSet:
    """The label set of a results table: its organs in the order the summaries list them (value order)."""
    return LabelSet(tuple(dict.fromkeys(results["organ"]))) if not results.empty else BTCV_LABELS


def draw_table(results: pd.DataFrame, metric: str = "dice", labels: LabelSet = BTCV_LABELS) -> pd.DataFrame:
    """Per draw (index data, method, repeat): each organ's mean over test cases (NaN skipped) and Avg,
    their mean over organs, scaled as the metric is shown (percent, HD95 in mm)."""
    df = results.copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    per_repeat = df.groupby(["data", "method", "repeat", "organ"])[metric].mean().unstack("organ").reindex(columns=list(labels.organs))
    per_repeat.columns = list(labels.columns)
    per_repeat["Avg"] = per_repeat[list(labels.columns)].mean(axis=1, skipna=True)
    return per_repeat * metric_scale(metric)


def organ_table(results: pd.DataFrame, metric: str = "dice", labels: LabelSet = BTCV_LABELS) -> pd.DataFrame:
    """One row per (data, method): mean and std over draws of every organ and of Avg (in percent, HD95
    in mm) and the number of draws that scored the metric ("repeats"); columns data, method, <column>_mean, <column>_std, repeats.

    Per draw, each organ's mean over test cases (NaN skipped) and Avg, their mean over organs; then
    mean and standard deviation over draws, as the paper averages its five draws.
    """
    per_repeat = draw_table(results, metric, labels)
    grouped = per_repeat.groupby(["data", "method"])
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    # Draws that scored the metric: a run from before a metric existed has none of its values.
    out["repeats"] = per_repeat["Avg"].notna().groupby(["data", "method"]).sum()
    return out.reset_index()


def penalty_summary(results: pd.DataFrame, metric: str = "hd95") -> pd.DataFrame:
    """What the mean of a metric that penalises a missed organ (HD95: the field of view's diagonal)
    hides, per (data, method): the median over every scored organ of every test case and draw, how
    many organs present in the reference were missed (predicted nowhere) and how many absent ones
    were predicted, and the range of the penalty those got (which grows with the scan). Columns
    data, method, median, missed, present, spurious, penalty_min, penalty_max; counts are NaN where
    the summaries lack voxel counts."""
    columns = ["data", "method", "median", "missed", "present", "spurious", "penalty_min", "penalty_max"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    df = results.copy()
    for column in (metric, *VOXEL_COUNTS):
        df[column] = pd.to_numeric(df[column], errors="coerce")
    counted = df["n_ref"].notna() & df["n_pred"].notna()
    df["present"] = df["n_ref"] > 0
    df["missed"] = df["present"] & (df["n_pred"] == 0)
    df["spurious"] = (df["n_ref"] == 0) & (df["n_pred"] > 0)
    df["penalty"] = df[metric].where(df["missed"] | df["spurious"])
    rows = []
    for (data, method), group in df.groupby(["data", "method"], sort=False):
        known = bool(counted[group.index].all())
        rows.append(
            {
                "data": data,
                "method": method,
                "median": float(group[metric].median()),
                **{k: int(group[k].sum()) if known else math.nan for k in ("missed", "present", "spurious")},
                "penalty_min": float(group["penalty"].min()),
                "penalty_max": float(group["penalty"].max()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def load_results(runs_dir: Path, methods: Iterable[str] | None = None, data: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame(collect_rows(runs_dir), columns=result_columns())
    if methods is not None:
        df = df[df["method"].isin(list(methods))]
    if data is not None:
        df = df[df["data"] == data]
    return df


def describe_space(space: str, spacing_mm: float | None = None) -> str:
    """How a table's numbers were scored, for its caption."""
    if space == "original":
        return "scored in the original label space (each label file's grid and voxel spacing)"
    return f"scored on the preprocessed grid ({spacing_mm:g} mm voxels, body crop)" if spacing_mm else "scored on the preprocessed grid"
