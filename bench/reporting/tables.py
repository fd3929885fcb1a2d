"""Table 1 as in the TP-Mamba paper: methods as rows grouped by data fraction, the 13 organs and Avg
as columns, each cell the mean over draws (in %, one decimal) with the standard deviation over
draws; best and second best per column marked (bold / underline in Markdown, red / blue in LaTeX
and HTML), and the paper's own numbers beside ours."""

from __future__ import annotations

import math

import pandas as pd

from bench.data.labels import BTCV_LABELS, LabelSet
from bench.evaluation.scores import Metric, get_metric
from bench.reporting.data import ReportData
from bench.runs.results import organ_table, penalty_summary
from bench.runs.state import describe
from splits import FRACTIONS, Protocol


def columns_of(table: pd.DataFrame) -> list[str]:
    """A Table-1 frame's columns (its label set's, then Avg), from its ``<column>_mean`` fields."""
    return [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]


def table1(
    results: pd.DataFrame,
    counts: dict | None = None,
    order: list[str] | None = None,
    metric: str = "dice",
    fractions: tuple[str, ...] = FRACTIONS,
    labels: LabelSet = BTCV_LABELS,
) -> pd.DataFrame:
    """Long table of one metric: one row per (data, method) with mean/std over draws for every column
    and the draw count. Grid cells with no finished draw (counts) get a row of NaN, so they are
    shown, not dropped.
    """
    columns = (*labels.columns, "Avg")
    rows = organ_table(results, metric, labels).to_dict("records") if not results.empty else []
    have = {(r["data"], r["method"]) for r in rows}
    for data, method in counts or {}:
        if (data, method) not in have:
            rows.append({"data": data, "method": method, "repeats": 0, **{f"{c}_{s}": math.nan for c in columns for s in ("mean", "std")}})
    table = pd.DataFrame(rows, columns=["data", "method", *[f"{c}_{s}" for s in ("mean", "std") for c in columns], "repeats"])
    rank = {m: i for i, m in enumerate(order or sorted(table["method"].unique()))}
    table["_f"] = table["data"].map({f: i for i, f in enumerate(fractions)})
    table["_m"] = table["method"].map(lambda m: rank.get(m, len(rank)))
    return table.sort_values(["_f", "_m"]).drop(columns=["_f", "_m"]).reset_index(drop=True)


def _ranks(values: list[float], lower_is_better: bool = False) -> tuple[float | None, float | None]:
    """Best and second-best of the values as printed (one decimal), so printed ties mark alike.

    A printed 0.0 Dice is never marked: where every method misses an organ, none of them is best at it.
    """
    shown = {round(v, 1) for v in values if v == v}
    finite = sorted(shown) if lower_is_better else sorted((v for v in shown if v > 0), reverse=True)
    return (finite[0] if finite else None, finite[1] if len(finite) > 1 else None)


def marked_rows(table: pd.DataFrame, fraction: str, counts: dict, metric: str = "dice") -> list[dict]:
    """Rows of one fraction ready for any renderer: label, note, and per column (mean, std, mark)."""
    columns = columns_of(table)
    rows = table[table["data"] == fraction]
    marks = {c: _ranks(rows[f"{c}_mean"].tolist(), get_metric(metric).lower_is_better) for c in columns}
    out = []
    for _, row in rows.iterrows():
        cells = []
        for c in columns:
            mean, std = row[f"{c}_mean"], row[f"{c}_std"]
            shown = round(mean, 1) if mean == mean else None
            mark = "best" if shown is not None and shown == marks[c][0] else "second" if shown is not None and shown == marks[c][1] else ""
            cells.append({"column": c, "mean": mean, "std": std, "mark": mark})
        entry = counts.get((fraction, row["method"]))
        # Draws finished before this metric existed count in the grid but not in its means.
        unscored = f"{metric} scored in {int(row['repeats'])} of them" if entry and 0 < row["repeats"] < entry["done"] else ""
        out.append(
            {
                "method": row["method"],
                "repeats": int(row["repeats"]),
                "note": "; ".join(part for part in (entry.get("title", ""), describe(entry), unscored) if part) if entry else "",
                "reasons": entry["reasons"] if entry else [],
                "cells": cells,
            }
        )
    return out


def penalty_rows(table: pd.DataFrame, results: pd.DataFrame, fraction: str, metric: str = "hd95") -> list[dict]:
    """Beside the table of a metric that penalises misses, for one fraction in its row order: the
    mean of Avg as the table shows it, the median, the missed and spurious organs
    (``bench.runs.results.penalty_summary``)."""
    summary = penalty_summary(results[results["data"] == fraction] if not results.empty else results, metric).set_index("method")
    rows = []
    for _, row in table[table["data"] == fraction].iterrows():
        if row["method"] in summary.index:
            rows.append({"method": row["method"], "mean": row["Avg_mean"], **summary.loc[row["method"]].to_dict()})
    return rows


def _count(part: float, whole: float) -> str:
    return "-" if part != part else f"{int(part)} of {int(whole)}"


def penalty_range(rows: list[dict]) -> str:
    """The penalties that misses were given here, as text ('' when nothing was missed)."""
    low = min((r["penalty_min"] for r in rows if r["penalty_min"] == r["penalty_min"]), default=math.nan)
    high = max((r["penalty_max"] for r in rows if r["penalty_max"] == r["penalty_max"]), default=math.nan)
    if low != low:
        return ""
    return f"{low:.0f} mm" if round(low) == round(high) else f"{low:.0f}-{high:.0f} mm"


def penalises_misses(metric: Metric) -> bool:
    """A metric whose value for a missed or spurious organ is a penalty computed from the scan (HD95's
    diagonal) rather than a fixed worst value: its mean needs the median and the miss counts beside it."""
    return callable(metric.when_one_empty)


def beside_paper(table: pd.DataFrame, paper: dict, counts: dict, protocol: Protocol) -> list[dict]:
    """Ours, the paper's and the difference per column, for every (fraction, method) both have, when
    the runs were made under the protocol the paper's table was measured under."""
    columns = columns_of(table)
    beside = []
    for fraction in protocol.fractions if protocol.compare_with_paper else ():
        for row in marked_rows(table, fraction, counts):
            published = paper.get((fraction, row["method"]))
            if published and row["repeats"] and all(c in published for c in columns):
                ours = [cell["mean"] for cell in row["cells"]]
                beside.append(
                    {
                        "data": fraction,
                        "method": row["method"],
                        "ours": ours,
                        "paper": [published[c] for c in columns],
                        "diff": [o - published[c] for o, c in zip(ours, columns, strict=True)],
                    }
                )
    return beside


def _fmt(value: float, std: float = math.nan, compact: bool = True, pm: str = " +/- ") -> str:
    if value != value:
        return "-"
    return f"{value:.1f}" if compact or std != std else f"{value:.1f}{pm}{std:.1f}"


def render_markdown(data: ReportData, table: pd.DataFrame, paper: dict, counts: dict, compact: bool = False, metric: str = "dice") -> str:
    """Table 1 (Dice, with the paper's rows beside it) or the same table of another metric."""
    columns = columns_of(table)
    spec = get_metric(metric)
    name = "Table 1: " if metric == "dice" else ""
    spread = ", mean over draws" if compact else ", mean +/- std over draws"
    lines = [f"# {name}{spec.title} on the test cases{spread}", ""]
    lines += [f"Runs: {stamp}" for stamp in data.stamps] + [f"Scores: {space}" for space in data.scoring]
    lines += [f"Cases: {data.protocol.caption}", ""]
    direction = "lowest" if spec.lower_is_better else "best"
    lines += [f"Best ({direction}) per column in **bold**, second <u>underlined</u>; a row that lacks draws says so.", ""]
    for fraction in data.protocol.fractions:
        rows = marked_rows(table, fraction, counts, metric)
        if not rows:
            continue
        lines += [
            f"### {data.protocol.fraction_title(fraction)}",
            "",
            "| Method | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for row in rows:
            cells = []
            for cell in row["cells"]:
                text = _fmt(cell["mean"], cell["std"], compact)
                cells.append(f"**{text}**" if cell["mark"] == "best" else f"<u>{text}</u>" if cell["mark"] == "second" else text)
            label = row["method"] + (f" ({row['note']})" if row["note"] else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        failed = [f"{row['method']} {reason}" for row in rows for reason in row["reasons"]]
        if failed:
            lines += ["Failed runs: " + "; ".join(failed), ""]
        if penalises_misses(spec):
            lines += _penalty_markdown(penalty_rows(table, data.results, fraction, metric), spec)
    beside = beside_paper(table, paper, counts, data.protocol) if metric == "dice" else []
    if beside:
        lines += ["## Beside the paper's Table 1", ""]
        if data.synthetic:
            lines += ["The paper's rows are BTCV results: next to synthetic-data runs they are context, not a comparison.", ""]
        lines += ["| Fraction | Method | | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
        for row in beside:
            lines.append(f"| {row['data']} | {row['method']} | ours | " + " | ".join(_fmt(v) for v in row["ours"]) + " |")
            lines.append("| | | paper | " + " | ".join(f"{v:.1f}" for v in row["paper"]) + " |")
            lines.append("| | | ours - paper | " + " | ".join("-" if d != d else f"{d:+.1f}" for d in row["diff"]) + " |")
        lines.append("")
    return "\n".join(lines)


def penalty_text(metric: Metric, penalty: str) -> str:
    """What a mean of a miss-penalising metric hides, in one sentence (Markdown and HTML alike)."""
    short = metric.title.split(" (")[0]
    return (
        f"A mean {short} counts every missed or spurious organ as {metric.empty_rule}"
        + (f" ({penalty} in these scans)" if penalty else "")
        + ", so it depends on the scan size and is dominated by misses; the median over every organ of every"
        " test case and draw, and the counts of missed and spurious organs, say what it hides"
    )


def _penalty_markdown(rows: list[dict], metric: Metric) -> list[str]:
    short = metric.title.split(" (")[0]
    lines = [
        penalty_text(metric, penalty_range(rows)) + ":",
        "",
        f"| Method | Avg {short} (mean) | median | missed organs | spurious organs |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        missed, spurious = _count(r["missed"], r["present"]), "-" if r["spurious"] != r["spurious"] else str(int(r["spurious"]))
        lines.append(f"| {r['method']} | {_fmt(r['mean'])} | {_fmt(r['median'])} | {missed} | {spurious} |")
    return [*lines, ""]


def latex_escape(text: str) -> str:
    out = text.replace("\\", "\\textbackslash{}")
    for char in "&%$#_{}":
        out = out.replace(char, "\\" + char)
    return out.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")


def render_latex(data: ReportData, table: pd.DataFrame, counts: dict, compact: bool = False) -> str:
    """A booktabs tabular fragment (needs booktabs and xcolor), best red and second best blue."""
    columns = columns_of(table)
    lines = (
        [f"% runs: {stamp}" for stamp in data.stamps]
        + [f"% scores: {space}" for space in data.scoring]
        + [f"% cases: {data.protocol.caption}"]
        + [
            "% needs \\usepackage{booktabs,xcolor}",
            f"\\begin{{tabular}}{{l{'r' * len(columns)}}}",
            "\\toprule",
            "Method & " + " & ".join(columns) + " \\\\",
            "\\midrule",
        ]
    )
    for fraction in data.protocol.fractions:
        rows = marked_rows(table, fraction, counts)
        if not rows:
            continue
        lines.append(f"\\multicolumn{{{len(columns) + 1}}}{{l}}{{\\emph{{{latex_escape(data.protocol.fraction_title(fraction))}}}}} \\\\")
        for row in rows:
            cells = []
            for cell in row["cells"]:
                mean, std = cell["mean"], cell["std"]
                text = "--" if mean != mean else f"{mean:.1f}"
                if cell["mark"]:
                    text = f"\\textcolor{{{'red' if cell['mark'] == 'best' else 'blue'}}}{{{text}}}"
                if not compact and mean == mean and std == std:
                    text += f"$_{{\\pm {std:.1f}}}$"
                cells.append(text)
            label = latex_escape(row["method"]) + (f" ({latex_escape(row['note'])})" if row["note"] else "")
            lines.append(label + " & " + " & ".join(cells) + " \\\\")
        lines.append("\\midrule")
    lines[-1] = "\\bottomrule"
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"
