"""Paper-style tables from a runs folder, derived only from its summary.json files.

Table 1 as in the TP-Mamba paper: methods as rows grouped by data fraction, the 13 organs and Avg
as columns, each cell the mean over repeats (in %, one decimal) with the standard deviation over
repeats beside it; best and second best per column marked (bold / underline in Markdown, red /
blue in LaTeX). Where the paper has the same method and fraction, its number and our difference
come with it. Missing draws are counted and shown, never averaged away silently.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.data.labels import ORGAN_COLUMNS, ORGANS
from bench.io import write_text
from bench.results import load_results

COLUMNS = (*ORGAN_COLUMNS, "Avg")
FRACTIONS = ("100pct", "25pct", "12pct")
FRACTION_TITLES = {"100pct": "100% of the training data (24 cases)", "25pct": "25% (6 cases)", "12pct": "12% (3 cases)"}


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (data, method) with mean/std over repeats for every column, plus n."""
    df = results.copy()
    df["dice"] = pd.to_numeric(df["dice"], errors="coerce")
    per_repeat = df.groupby(["data", "method", "repeat", "organ"])["dice"].mean().unstack("organ").reindex(columns=list(ORGANS))
    per_repeat.columns = list(ORGAN_COLUMNS)
    per_repeat["Avg"] = per_repeat[list(ORGAN_COLUMNS)].mean(axis=1, skipna=True)
    per_repeat = per_repeat * 100.0
    grouped = per_repeat.groupby(["data", "method"])
    means, stds = grouped.mean(), grouped.std(ddof=1)
    out = means.add_suffix("_mean").join(stds.add_suffix("_std"))
    out["repeats"] = grouped.size()
    return out.reset_index()


def _ranks(values: list[float]) -> tuple[float | None, float | None]:
    """Best and second-best of the values as printed (one decimal), so printed ties mark alike."""
    finite = sorted({round(v, 1) for v in values if v == v}, reverse=True)
    return (finite[0] if finite else None, finite[1] if len(finite) > 1 else None)


def _cell(mean: float, std: float, compact: bool) -> str:
    if mean != mean:
        return "-"
    if std != std or compact:
        return f"{mean:.1f}"
    return f"{mean:.1f} +/- {std:.1f}"


def render_markdown(table: pd.DataFrame, paper: dict, expected_repeats: dict[str, int], stamps: list[str], compact: bool = False) -> str:
    lines = ["# Table 1: Dice (%) on the test cases, mean +/- std over draws", ""]
    lines += [f"Runs: {stamp}" for stamp in stamps] + [""]
    if any("SYNTHETIC" in stamp for stamp in stamps):
        lines += ["The paper's rows are BTCV results: next to synthetic-data runs they are context, not a comparison.", ""]
    for fraction in FRACTIONS:
        rows = table[table["data"] == fraction]
        if rows.empty:
            continue
        lines += [f"### {FRACTION_TITLES[fraction]}", "", "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        marks = {c: _ranks(rows[f"{c}_mean"].tolist()) for c in COLUMNS}
        for _, row in rows.iterrows():
            cells = []
            for c in COLUMNS:
                text = _cell(row[f"{c}_mean"], row[f"{c}_std"], compact)
                best, second = marks[c]
                shown = round(row[f"{c}_mean"], 1)
                if shown == best:
                    text = f"**{text}**"
                elif shown == second:
                    text = f"<u>{text}</u>"
                cells.append(text)
            n, expected = int(row["repeats"]), expected_repeats.get(fraction, 1)
            label = row["method"] + ("" if n == expected else f" ({n} of {expected} draws)")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
            published = paper.get((fraction, row["method"]))
            if published:
                lines.append("| &nbsp; paper | " + " | ".join(f"{published[c]:.1f}" for c in COLUMNS) + " |")
                diffs = [row[f"{c}_mean"] - published[c] for c in COLUMNS]
                lines.append("| &nbsp; ours - paper | " + " | ".join("-" if d != d else f"{d:+.1f}" for d in diffs) + " |")
        lines.append("")
    return "\n".join(lines)


def render_latex(table: pd.DataFrame, stamps: list[str]) -> str:
    """A booktabs tabular fragment (needs booktabs and xcolor), best red and second best blue."""
    spec = "l" + "r" * len(COLUMNS)
    lines = [f"% runs: {stamp}" for stamp in stamps] + [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        "Method & " + " & ".join(COLUMNS) + " \\\\",
        "\\midrule",
    ]
    for fraction in FRACTIONS:
        rows = table[table["data"] == fraction]
        if rows.empty:
            continue
        title = FRACTION_TITLES[fraction].replace("%", "\\%")
        lines.append(f"\\multicolumn{{{len(COLUMNS) + 1}}}{{l}}{{\\emph{{{title}}}}} \\\\")
        marks = {c: _ranks(rows[f"{c}_mean"].tolist()) for c in COLUMNS}
        for _, row in rows.iterrows():
            cells = []
            for c in COLUMNS:
                value = row[f"{c}_mean"]
                text = "--" if value != value else f"{value:.1f}"
                if round(value, 1) == marks[c][0]:
                    text = f"\\textcolor{{red}}{{{text}}}"
                elif round(value, 1) == marks[c][1]:
                    text = f"\\textcolor{{blue}}{{{text}}}"
                cells.append(text)
            lines.append(row["method"].replace("_", "\\_") + " & " + " & ".join(cells) + " \\\\")
        lines.append("\\midrule")
    lines[-1] = "\\bottomrule"
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def write_report(runs_dir: Path, out_dir: Path, paper: dict) -> dict[str, Path]:
    """Write table1.{md,tex,csv} and cases.csv; returns their paths. Raises ValueError on an empty folder."""
    from bench.io import read_json
    from splits import load_splits

    results = load_results(runs_dir)
    if results.empty:
        raise ValueError(f"no finished runs (summary.json) under {runs_dir}")
    stamps = sorted({read_json(p).get("stamp", "no provenance stamp") for p in Path(runs_dir).glob("*/*/repeat*/summary.json")})
    table = table1(results)
    expected = {fraction: len(draws) for fraction, draws in load_splits().train.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("table1.md", "table1.tex", "table1.csv", "cases.csv")}
    write_text(paths["table1.md"], render_markdown(table, paper, expected, stamps))
    write_text(paths["table1.tex"], render_latex(table, stamps))
    write_text(paths["table1.csv"], table.to_csv(index=False, float_format="%.2f"))
    write_text(paths["cases.csv"], results.to_csv(index=False))
    return paths
