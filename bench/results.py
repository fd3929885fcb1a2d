"""Run summaries (nnU-Net style), the long results table and the paper-style per-organ table."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.data.labels import ORGAN_COLUMNS, ORGANS
from bench.io import locked, read_json, write_json, write_text
from bench.metrics import nanmean

RESULT_COLUMNS = ("method", "data", "repeat", "case", "organ", "dice", "nsd")


def summarize(per_case: list[dict], header: dict) -> dict:
    """summary.json content: header, per-case metrics, per-organ means and the foreground mean.

    Means skip NaN (organ absent from both reference and prediction), as nnU-Net does.
    """
    mean = {organ: {metric: nanmean(case["metrics"][organ][metric] for case in per_case) for metric in ("dice", "nsd")} for organ in ORGANS}
    foreground = {metric: nanmean(mean[organ][metric] for organ in ORGANS) for metric in ("dice", "nsd")}
    return {**header, "metric_per_case": per_case, "mean": mean, "foreground_mean": foreground}


def write_summary(path: Path, summary: dict) -> None:
    write_json(path, summary)


def collect_rows(runs_dir: Path) -> list[dict]:
    """Long-format rows from every summary.json under runs_dir/<data>/<method>/repeat<k>/."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/*/repeat*/summary.json")):
        summary = read_json(path)
        for case in summary["metric_per_case"]:
            for organ in ORGANS:
                m = case["metrics"][organ]
                rows.append(
                    {
                        "method": summary["method"],
                        "data": summary["data"],
                        "repeat": summary["repeat"],
                        "case": case["case"],
                        "organ": organ,
                        "dice": m["dice"],
                        "nsd": m["nsd"],
                    }
                )
    return rows


def write_results_csv(runs_dir: Path) -> Path:
    """Rebuild runs_dir/results.csv from the summaries, so it never disagrees with them.

    Each process writes its summary before it rebuilds, and rebuilds take turns under a lock, so
    with several runs writing to one folder (SLURM jobs, two terminals) the last rebuild has them all.
    """
    path = Path(runs_dir) / "results.csv"
    with locked(Path(runs_dir) / ".results.lock"):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in collect_rows(runs_dir):
            writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()})
        write_text(path, buffer.getvalue())
    return path


def organ_table(results: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Rows (method, data), columns the paper's organ names + Avg, in percent.

    Per repeat, each organ's mean over test cases (NaN skipped); then the mean over repeats, as
    the paper averages its five draws. Avg is the mean over organs of those numbers.
    """
    df = results.copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    per_repeat = df.groupby(["method", "data", "repeat", "organ"], sort=False)[metric].mean()
    per_organ = per_repeat.groupby(["method", "data", "organ"], sort=False).mean().unstack("organ")
    per_organ = per_organ.reindex(columns=list(ORGANS))
    per_organ.columns = list(ORGAN_COLUMNS)
    per_organ["Avg"] = per_organ[list(ORGAN_COLUMNS)].mean(axis=1, skipna=True)
    return per_organ * 100.0


def repeats_in(results: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {key: group["repeat"].nunique() for key, group in results.groupby(["method", "data"])}


def load_results(runs_dir: Path, methods: Iterable[str] | None = None, data: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame(collect_rows(runs_dir), columns=RESULT_COLUMNS)
    if methods is not None:
        df = df[df["method"].isin(list(methods))]
    if data is not None:
        df = df[df["data"] == data]
    return df
