"""The paper's figures from run files: convergence (Fig. 4), Dice against data fraction (Fig. 1a),
per-organ box plots, the adapter-cost bars (Fig. 1c) and Dice against cost with its Pareto fronts. matplotlib's object API, no pyplot, so
nothing depends on a display or on global figure state.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bench.data.labels import LabelSet
from reports import PAPER_METHOD
from splits import Protocol

PAPER_RED = (0.84, 0.15, 0.16)


def method_colors(methods) -> dict[str, tuple]:
    """One colour per method, the same in every figure of a report (the paper's method in its red)."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors + colormaps["Dark2"].colors
    others = [m for m in sorted(methods) if m != PAPER_METHOD]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(others)}
    if PAPER_METHOD in methods:
        colors[PAPER_METHOD] = PAPER_RED
    return colors


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def save_png(fig: Figure, path: Path) -> bytes:
    from bench.io import atomic_write

    data = png_bytes(fig)
    atomic_write(Path(path), lambda fh: fh.write(data))
    return data


def convergence_figure(curves: dict[str, dict[str, list[tuple[list[int], list[float]]]]], colors: dict, protocol: Protocol) -> Figure:
    """Validation Dice (%) against epoch, one panel per data fraction; mean over draws, min-max band.

    curves: fraction -> method -> [(epochs, dice) per draw].
    """
    fractions = [f for f in protocol.fractions if f in curves]
    fig = Figure(figsize=(5.2 * len(fractions), 3.8), layout="constrained")
    axes = fig.subplots(1, len(fractions), squeeze=False)[0]
    for ax, fraction in zip(axes, fractions, strict=True):
        for method, draws in sorted(curves[fraction].items()):
            table = pd.DataFrame(
                [{"epoch": e, "dice": d * 100, "draw": i} for i, (es, ds) in enumerate(draws) for e, d in zip(es, ds, strict=True)]
            )
            if table.empty:
                continue
            stats = table.groupby("epoch")["dice"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], marker="o", markersize=3, color=colors[method], label=f"{method} ({len(draws)})")
            if len(draws) > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[method], alpha=0.15, linewidth=0)
        ax.set_title(f"{protocol.percent(fraction)} of the training data")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Dice (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="method (draws)", title_fontsize=8)
    return fig


def data_efficiency_figure(table: pd.DataFrame, colors: dict, protocol: Protocol) -> Figure:
    """Average Dice (%) against the number of training cases, mean +/- std over draws (Fig. 1a)."""
    cases = {f: protocol.cases_per_draw(f) for f in reversed(protocol.fractions)}  # fewest cases first
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for method, rows in table.groupby("method"):
        rows = rows[rows["Avg_mean"].notna()]
        rows = rows.assign(cases=rows["data"].map(cases)).sort_values("cases")
        if rows.empty:
            continue
        ax.errorbar(
            rows["cases"],
            rows["Avg_mean"],
            yerr=rows["Avg_std"].fillna(0),
            marker="o",
            capsize=3,
            color=colors[method],
            label=method,
        )
    ax.set_xscale("log")
    ax.set_xticks(list(cases.values()), [f"{n} ({protocol.percent(f)})" for f, n in cases.items()])
    ax.minorticks_off()
    ax.set_xlabel("training cases")
    ax.set_ylabel("average Dice (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def organ_boxplot_figure(results: pd.DataFrame, fraction: str, methods: list[str], colors: dict, percent: str, labels: LabelSet) -> Figure:
    """Per-organ Dice (%) over test cases and draws: one group of boxes per organ, one box per method."""
    df = results[results["data"] == fraction].copy()
    df["dice"] = pd.to_numeric(df["dice"], errors="coerce") * 100
    fig = Figure(figsize=(max(9.0, 0.35 * len(methods) * len(labels.organs)), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        values = [df[(df["method"] == method) & (df["organ"] == organ)]["dice"].dropna().to_numpy() for organ in labels.organs]
        positions = [k + (i - (len(methods) - 1) / 2) * width for k in range(len(labels.organs))]
        kept = [(p, v) for p, v in zip(positions, values, strict=True) if v.size]
        if not kept:
            continue
        boxes = ax.boxplot(
            [v for _, v in kept],
            positions=[p for p, _ in kept],
            widths=width * 0.9,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 2},
            medianprops={"color": "black"},
        )
        for patch in boxes["boxes"]:
            patch.set_facecolor(colors[method])
            patch.set_alpha(0.75)
        ax.plot([], [], color=colors[method], linewidth=6, label=method)
    ax.set_xticks(range(len(labels.organs)), labels.columns)
    ax.set_ylim(-2, 102)
    ax.set_ylabel("Dice (%) per case")
    ax.set_title(f"{percent} of the training data: Dice per organ over test cases and draws")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(len(methods), 6), loc="lower left")
    return fig


def adapter_figure(rows: list[dict], title: str) -> Figure:
    """GMACs each adapter adds to one ViT block, horizontal bars on a log axis (Fig. 1c)."""
    fig = Figure(figsize=(7.0, 0.5 * len(rows) + 1.2), layout="constrained")
    ax = fig.subplots()
    names = [r["name"] for r in rows]
    values = [r["gmacs_per_block"] for r in rows]
    bars = ax.barh(names, values, color=[PAPER_RED if n == PAPER_METHOD else (0.27, 0.43, 0.71) for n in names])
    for bar, row in zip(bars, rows, strict=True):
        ax.annotate(
            f" {row['gmacs_per_block']:.3f} (x{row['ratio_to_lora']:g} LoRA)",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
        )
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")
    ax.set_xlim(right=max(values) * (8 if ax.get_xscale() == "log" else 1.5) if values else 1)
    ax.invert_yaxis()
    ax.set_xlabel("GMACs per block")
    ax.set_title(title, fontsize=10)
    return fig


def significance_heatmap(tests: list[dict], order: list[str], title: str) -> Figure:
    """Holm-adjusted p of every pair of methods (Wilcoxon on paired cases), methods ordered by mean
    Dice, best first; cells of the pairs the tests call significant carry a star. The matrix is
    symmetric: a cell says whether its row and column method differ, not which is better."""
    import numpy as np
    from matplotlib.colors import LogNorm

    index = {m: i for i, m in enumerate(order)}
    matrix = np.full((len(order), len(order)), np.nan)
    significant = np.zeros_like(matrix, dtype=bool)
    for t in tests:
        i, j = index[t["first"]], index[t["second"]]
        matrix[i, j] = matrix[j, i] = t["p_holm"]
        significant[i, j] = significant[j, i] = t["significant"]
    size = 1.2 + 0.55 * len(order)
    fig = Figure(figsize=(size + 1.4, size), layout="constrained")
    ax = fig.subplots()
    shown = np.clip(matrix, 1e-4, 1.0)
    image = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1.0))
    for i in range(len(order)):
        for j in range(len(order)):
            if i != j and matrix[i, j] == matrix[i, j]:
                text = f"{matrix[i, j]:.2g}" + ("*" if significant[i, j] else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if significant[i, j] else "black")
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="Holm-adjusted p (log scale)")
    return fig


FRACTION_MARKERS = ("o", "s", "^", "D", "v", "P")


def cost_figure(panels: list[dict], colors: dict, protocol: Protocol) -> Figure:
    """Average Dice (%) against a cost, one panel per cost (``bench.reporting.costs.figure_panels``),
    log x; one marker per method and fraction (marker shape: fraction); per fraction, the Pareto
    front (no point both cheaper and better) joined by a dashed line, its points ringed."""
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(5.6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        for k, fraction in enumerate(protocol.fractions):
            points = [p for p in panel["points"] if p["data"] == fraction]
            if not points:
                continue
            marker = FRACTION_MARKERS[k % len(FRACTION_MARKERS)]
            for p in points:
                ax.scatter(p["x"], p["y"], marker=marker, s=42, color=colors[p["method"]], zorder=3)
            front = sorted((p for p in points if p["front"]), key=lambda p: p["x"])
            ax.plot([p["x"] for p in front], [p["y"] for p in front], "--", color="0.35", linewidth=1, zorder=2)
            ax.scatter([p["x"] for p in front], [p["y"] for p in front], s=130, facecolors="none", edgecolors="0.2", zorder=4)
            ax.scatter([], [], marker=marker, color="0.5", label=f"{protocol.percent(fraction)} of the data")
        for method in dict.fromkeys(p["method"] for p in panel["points"]):
            ax.scatter([], [], marker="o", color=colors[method], label=method)
        ax.plot([], [], "--o", color="0.35", markerfacecolor="none", label="Pareto front")
        ax.set_xscale("log")
        # 0.005, 3, 400 rather than 5 x 10^-3; between powers of ten only 2, 3 and 5 x, so labels never crowd.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:e}"[0] in "235" else ""))
        ax.set_xlabel(panel["x_label"])
        ax.set_ylabel("average Dice (%)")
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig
