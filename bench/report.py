"""Paper-style report of a runs folder, derived only from its run files (config, log, summary, failed).

Table 1 as in the TP-Mamba paper: methods as rows grouped by data fraction, the 13 organs and Avg
as columns, each cell the mean over draws (in %, one decimal) with the standard deviation over
draws; best and second best per column marked (bold / underline in Markdown, red / blue in LaTeX
and HTML). Beside it the paper's own numbers and our difference, the paper's figures (convergence,
Dice against data fraction, per-organ spread), a paired test against the best method, the compute
table and the provenance of every number. Unfinished grids are shown as unfinished.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.config import FRACTIONS
from bench.grid import RunState, describe, grid_counts, scan_grid
from bench.io import read_json, write_text
from bench.results import TABLE_COLUMNS, load_results, organ_table
from bench.runfiles import CONFIG_FILE, LOG_FILE, SUMMARY_FILE, read_log
from splits import load_splits

COLUMNS = TABLE_COLUMNS
FRACTION_TITLES = {f: load_splits().title(f) for f in FRACTIONS}


@dataclass
class ReportData:
    """Everything a report shows, read once from the runs folder."""

    runs_dir: Path
    results: pd.DataFrame
    states: list[RunState]
    configs: dict[tuple[str, str, int], dict]
    curves: dict[str, dict[str, list[tuple[list[int], list[float]]]]]
    stamps: list[str]
    extras: dict = field(default_factory=dict)  # flops / speed JSON found in the folder

    @property
    def synthetic(self) -> bool:
        return any("SYNTHETIC" in s for s in self.stamps)


def _method_order(methods, paper: dict) -> list[str]:
    """The paper's row order for its methods, then anything else; an ablation variant follows its base."""
    paper_order = list(dict.fromkeys(m for _, m in paper))

    def key(label: str):
        base = label.split("[")[0]
        return (paper_order.index(base) if base in paper_order else len(paper_order), base, label)

    return sorted(set(methods), key=key)


def table1(results: pd.DataFrame, counts: dict | None = None, order: list[str] | None = None) -> pd.DataFrame:
    """Long table: one row per (data, method) with mean/std over draws for every column and the draw count.

    Grid cells with no finished draw (counts) get a row of NaN, so they are shown, not dropped.
    """
    rows = organ_table(results).to_dict("records") if not results.empty else []
    have = {(r["data"], r["method"]) for r in rows}
    for data, method in counts or {}:
        if (data, method) not in have:
            rows.append({"data": data, "method": method, "repeats": 0, **{f"{c}_{s}": math.nan for c in COLUMNS for s in ("mean", "std")}})
    table = pd.DataFrame(rows, columns=["data", "method", *[f"{c}_{s}" for s in ("mean", "std") for c in COLUMNS], "repeats"])
    rank = {m: i for i, m in enumerate(order or sorted(table["method"].unique()))}
    table["_f"] = table["data"].map({f: i for i, f in enumerate(FRACTIONS)})
    table["_m"] = table["method"].map(lambda m: rank.get(m, len(rank)))
    return table.sort_values(["_f", "_m"]).drop(columns=["_f", "_m"]).reset_index(drop=True)


def _ranks(values: list[float]) -> tuple[float | None, float | None]:
    """Best and second-best of the values as printed (one decimal), so printed ties mark alike.

    A printed 0.0 is never marked: where every method misses an organ, none of them is best at it.
    """
    finite = sorted({round(v, 1) for v in values if v == v and round(v, 1) > 0}, reverse=True)
    return (finite[0] if finite else None, finite[1] if len(finite) > 1 else None)


def marked_rows(table: pd.DataFrame, fraction: str, counts: dict) -> list[dict]:
    """Rows of one fraction ready for any renderer: label, note, and per column (mean, std, mark)."""
    rows = table[table["data"] == fraction]
    marks = {c: _ranks(rows[f"{c}_mean"].tolist()) for c in COLUMNS}
    out = []
    for _, row in rows.iterrows():
        cells = []
        for c in COLUMNS:
            mean, std = row[f"{c}_mean"], row[f"{c}_std"]
            shown = round(mean, 1) if mean == mean else None
            mark = "best" if shown is not None and shown == marks[c][0] else "second" if shown is not None and shown == marks[c][1] else ""
            cells.append({"column": c, "mean": mean, "std": std, "mark": mark})
        entry = counts.get((fraction, row["method"]))
        out.append(
            {
                "method": row["method"],
                "repeats": int(row["repeats"]),
                "note": describe(entry) if entry else "",
                "reasons": entry["reasons"] if entry else [],
                "cells": cells,
            }
        )
    return out


def beside_paper(table: pd.DataFrame, paper: dict, counts: dict) -> list[dict]:
    """Ours, the paper's and the difference per column, for every (fraction, method) both have."""
    beside = []
    for fraction in FRACTIONS:
        for row in marked_rows(table, fraction, counts):
            published = paper.get((fraction, row["method"]))
            if published and row["repeats"]:
                ours = [cell["mean"] for cell in row["cells"]]
                beside.append(
                    {
                        "data": fraction,
                        "method": row["method"],
                        "ours": ours,
                        "paper": [published[c] for c in COLUMNS],
                        "diff": [o - published[c] for o, c in zip(ours, COLUMNS, strict=True)],
                    }
                )
    return beside


def _fmt(value: float, std: float = math.nan, compact: bool = True, pm: str = " +/- ") -> str:
    if value != value:
        return "-"
    return f"{value:.1f}" if compact or std != std else f"{value:.1f}{pm}{std:.1f}"


def render_markdown(data: ReportData, table: pd.DataFrame, paper: dict, counts: dict, compact: bool = False) -> str:
    lines = ["# Table 1: Dice (%) on the test cases" + (", mean over draws" if compact else ", mean +/- std over draws"), ""]
    lines += [f"Runs: {stamp}" for stamp in data.stamps] + [""]
    lines += ["Best per column in **bold**, second best <u>underlined</u>; a row that lacks draws says so.", ""]
    for fraction in FRACTIONS:
        rows = marked_rows(table, fraction, counts)
        if not rows:
            continue
        lines += [f"### {FRACTION_TITLES[fraction]}", "", "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
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
    beside = beside_paper(table, paper, counts)
    if beside:
        lines += ["## Beside the paper's Table 1", ""]
        if data.synthetic:
            lines += ["The paper's rows are BTCV results: next to synthetic-data runs they are context, not a comparison.", ""]
        lines += ["| Fraction | Method | | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 3) + "|"]
        for row in beside:
            lines.append(f"| {row['data']} | {row['method']} | ours | " + " | ".join(_fmt(v) for v in row["ours"]) + " |")
            lines.append("| | | paper | " + " | ".join(f"{v:.1f}" for v in row["paper"]) + " |")
            lines.append("| | | ours - paper | " + " | ".join("-" if d != d else f"{d:+.1f}" for d in row["diff"]) + " |")
        lines.append("")
    return "\n".join(lines)


def latex_escape(text: str) -> str:
    out = text.replace("\\", "\\textbackslash{}")
    for char in "&%$#_{}":
        out = out.replace(char, "\\" + char)
    return out.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")


def render_latex(data: ReportData, table: pd.DataFrame, counts: dict, compact: bool = False) -> str:
    """A booktabs tabular fragment (needs booktabs and xcolor), best red and second best blue."""
    lines = [f"% runs: {stamp}" for stamp in data.stamps] + [
        "% needs \\usepackage{booktabs,xcolor}",
        f"\\begin{{tabular}}{{l{'r' * len(COLUMNS)}}}",
        "\\toprule",
        "Method & " + " & ".join(COLUMNS) + " \\\\",
        "\\midrule",
    ]
    for fraction in FRACTIONS:
        rows = marked_rows(table, fraction, counts)
        if not rows:
            continue
        lines.append(f"\\multicolumn{{{len(COLUMNS) + 1}}}{{l}}{{\\emph{{{latex_escape(FRACTION_TITLES[fraction])}}}}} \\\\")
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


def paired_tests(results: pd.DataFrame, table: pd.DataFrame) -> list[dict]:
    """Each method against the best (highest Avg) of its fraction: Wilcoxon signed-rank over (draw, case) pairs.

    A pair is the same test case scored by models trained on the same draw, each value the case's
    Dice averaged over organs (NaN organs skipped). Two-sided; pairs missing from either method are left out.
    """
    from scipy.stats import wilcoxon

    if results.empty:
        return []
    df = results.copy()
    df["dice"] = pd.to_numeric(df["dice"], errors="coerce")
    per_case = df.groupby(["data", "method", "repeat", "case"])["dice"].mean() * 100
    tests = []
    for fraction in FRACTIONS:
        ranked = table[(table["data"] == fraction) & table["Avg_mean"].notna()].sort_values("Avg_mean", ascending=False)
        if len(ranked) < 2:
            continue
        best = ranked.iloc[0]["method"]
        reference = per_case.loc[(fraction, best)]
        for method in ranked["method"].iloc[1:]:
            joined = pd.concat([per_case.loc[(fraction, method)].rename("other"), reference.rename("best")], axis=1, join="inner").dropna()
            diff = joined["other"] - joined["best"]
            if len(joined) == 0:
                p_value = math.nan
            elif (diff == 0).all():
                p_value = 1.0
            else:
                p_value = float(wilcoxon(joined["other"], joined["best"]).pvalue)
            tests.append(
                {
                    "data": fraction,
                    "method": method,
                    "best": best,
                    "pairs": len(joined),
                    "mean_diff": float(diff.mean()) if len(diff) else math.nan,
                    "median_diff": float(diff.median()) if len(diff) else math.nan,
                    "p_value": p_value,
                }
            )
    return tests


def find_extras(runs_dir: Path) -> dict:
    """JSON from `bench flops --json` and `bench speed --json` saved in the runs folder, recognised by content."""
    extras: dict = {}
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            payload = read_json(path)
        except (ValueError, OSError):
            continue
        if isinstance(payload, dict) and payload.get("unit") == "GMACs" and "methods" in payload:
            extras["flops"], extras["flops_file"] = payload, path.name
        elif isinstance(payload, dict) and "loader_crops_per_s" in payload and "methods" in payload:
            extras["speed"], extras["speed_file"] = payload, path.name
    return extras


def compute_table(data: ReportData, methods: list[str]) -> list[dict]:
    """Per method: parameters as trained in these runs, and GMACs / time / memory where their JSON is present."""
    trained: dict[str, dict] = {}
    for (_, method, _), config in data.configs.items():
        trained.setdefault(method, config)
    flops = {r["name"]: r for r in data.extras.get("flops", {}).get("methods", [])}
    speed = {r["name"]: r for r in data.extras.get("speed", {}).get("methods", [])}
    rows = []
    for method in methods:
        base = method.split("[")[0]
        config = trained.get(method, {})
        f, s = flops.get(base, {}), speed.get(base, {})
        rows.append(
            {
                "method": method,
                "params_run": config.get("params_total"),
                "trainable_run": config.get("params_trainable"),
                "params_paper_size": f.get("params_total"),
                "trainable_paper_size": f.get("params_trainable"),
                "gmacs": f.get("gmacs"),
                "published_gmacs": f.get("published_gmacs"),
                "train_step_s": s.get("train_step_s"),
                "sliding_window_s": s.get("sliding_window_s"),
                "peak_memory_mib": s.get("peak_memory_mib"),
            }
        )
    return rows


def provenance(data: ReportData) -> list[tuple[str, str]]:
    """What the numbers were made with; a field that differs between runs lists every value it takes."""

    def values(getter) -> str:
        seen = []
        for config in data.configs.values():
            try:
                value = getter(config)
            except (KeyError, TypeError):
                value = None
            text = "n/a" if value in (None, "") else str(value)
            if text not in seen:
                seen.append(text)
        return "; ".join(seen) if seen else "n/a"

    prov = lambda key: lambda c: c["provenance"][key]  # noqa: E731
    versions = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c["provenance"]["versions"].items()) if v)  # noqa: E731
    hardware = lambda c: ", ".join(f"{k}: {v}" for k, v in c["provenance"]["hardware"].items())  # noqa: E731
    return [
        ("data", values(lambda c: "SYNTHETIC abdomen (not BTCV)" if c["provenance"]["synthetic"] else f"BTCV ({c['data_identity']})")),
        ("data folder", values(prov("data_root"))),
        ("profile", values(prov("profile"))),
        ("SAM backbone weights", values(prov("sam_weights"))),
        ("weights per method", values(lambda c: f"{c['method']}: {c['weights']}")),
        ("code revision", values(prov("code_revision"))),
        ("device", values(prov("device"))),
        ("hardware", values(hardware)),
        ("package versions", values(versions)),
        ("stamp", "; ".join(data.stamps) or "n/a"),
    ]


def _read_curve(log_path: Path) -> tuple[list[int], list[float]]:
    validated = [line for line in read_log(log_path) if line.val_dice is not None]
    return [line.epoch for line in validated], [line.val_dice for line in validated]


def load_report_data(runs_dir: Path) -> ReportData:
    runs_dir = Path(runs_dir)
    states = scan_grid(runs_dir)
    if not states:
        raise ValueError(f"no runs under {runs_dir} (expected <data>/<method>/repeat<k>/ folders written by bench run)")
    configs, curves, stamps = {}, {}, set()
    for s in states:
        if s.state == "missing":
            continue
        try:
            config = read_json(s.run_dir / CONFIG_FILE)
        except (OSError, ValueError):
            config = None
        if config:
            configs[(s.data, s.method, s.repeat)] = config
            stamps.add(config.get("provenance", {}).get("stamp", "no provenance stamp"))
        elif s.state == "done":  # config.json lost: the summary carries the stamp too
            stamps.add(read_json(s.run_dir / SUMMARY_FILE).get("stamp", "no provenance stamp"))
        epochs, dice = _read_curve(s.run_dir / LOG_FILE)
        if epochs:
            curves.setdefault(s.data, {}).setdefault(s.method, []).append((epochs, dice))
    return ReportData(runs_dir, load_results(runs_dir), states, configs, curves, sorted(stamps), find_extras(runs_dir))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(data: ReportData, table: pd.DataFrame, paper: dict, counts: dict, order: list[str], figures: dict[str, bytes]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = lambda v, digits=1: "-" if v is None or v != v else f"{v:.{digits}f}"
    env.filters["signed"] = lambda v: "-" if v is None or v != v else f"{v:+.1f}"
    env.filters["millions"] = lambda v: "-" if v is None else f"{v / 1e6:.2f}"
    fractions = [(f, FRACTION_TITLES[f], marked_rows(table, f, counts)) for f in FRACTIONS]
    status = sorted(data.states, key=lambda s: (FRACTIONS.index(s.data), order.index(s.method) if s.method in order else 99, s.repeat))
    template = env.get_template("report.html.j2")
    return template.render(
        title="TP-Mamba benchmark report",
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        runs_dir=str(data.runs_dir),
        stamps=data.stamps,
        synthetic=data.synthetic,
        columns=COLUMNS,
        fractions=[f for f in fractions if f[2]],
        beside=beside_paper(table, paper, counts),
        figures={name: _data_uri(png) for name, png in figures.items()},
        tests=paired_tests(data.results, table),
        compute=compute_table(data, order),
        extras=data.extras,
        provenance=provenance(data),
        status=status,
        configs=data.configs,
        grid_total=len(data.states),
        grid_done=sum(s.state == "done" for s in data.states),
    )


def build_figures(data: ReportData, table: pd.DataFrame, order: list[str], out_dir: Path) -> dict[str, bytes]:
    """The report's figures, each also saved as a PNG beside it for papers and slides."""
    from bench.figures import adapter_figure, convergence_figure, data_efficiency_figure, method_colors, organ_boxplot_figure, save_png

    colors = method_colors(order)
    figures: dict[str, bytes] = {}
    if data.curves:
        figures["fig4_convergence"] = save_png(convergence_figure(data.curves, colors), out_dir / "fig4_convergence.png")
    if table["Avg_mean"].notna().any():
        figures["fig1a_dice_vs_data"] = save_png(data_efficiency_figure(table, colors), out_dir / "fig1a_dice_vs_data.png")
    for fraction in FRACTIONS:
        methods = [
            m for m in order if not data.results.empty and ((data.results["data"] == fraction) & (data.results["method"] == m)).any()
        ]
        if methods:
            fig = organ_boxplot_figure(data.results, fraction, methods, colors)
            figures[f"organs_{fraction}"] = save_png(fig, out_dir / f"organs_{fraction}.png")
    flops = data.extras.get("flops")
    if flops and flops.get("adapters"):
        title = f"GMACs added per ViT block, input {flops['input']}^3, r = {flops['rank']}"
        figures["fig1c_adapters"] = save_png(adapter_figure(flops["adapters"], title), out_dir / "fig1c_adapters.png")
    return figures


def write_report(runs_dir: Path, out_dir: Path, paper: dict) -> dict[str, Path]:
    """Write Table 1 (+/- and compact, Markdown and LaTeX, CSV), cases.csv, the figures and report.html.

    Returns {file name: path}. Raises ValueError when the folder holds no runs at all.
    """
    data = load_report_data(runs_dir)
    counts = grid_counts(data.states)
    order = _method_order({s.method for s in data.states}, paper)
    table = table1(data.results, counts, order)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        "table1.md": render_markdown(data, table, paper, counts),
        "table1_compact.md": render_markdown(data, table, paper, counts, compact=True),
        "table1.tex": render_latex(data, table, counts),
        "table1_compact.tex": render_latex(data, table, counts, compact=True),
        "table1.csv": table.to_csv(index=False, float_format="%.2f"),
        "cases.csv": data.results.to_csv(index=False),
    }
    figures = build_figures(data, table, order, out_dir)
    texts["report.html"] = render_html(data, table, paper, counts, order, figures)
    paths = {}
    for name, text in texts.items():
        write_text(out_dir / name, text)
        paths[name] = out_dir / name
    for name in figures:
        paths[f"{name}.png"] = out_dir / f"{name}.png"
    return paths
