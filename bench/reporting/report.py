"""The report of a runs folder, derived only from its run files (config, log, summary, failed):
Table 1 in Markdown, LaTeX and CSV and the NSD and HD95 tables (``bench.reporting.tables``), the per-case
table, the paper's figures (``bench.reporting.figures``), the statistics of ``bench.reporting.stats`` (every pair of
methods tested with Holm's correction, bootstrap intervals and ranks, discriminative power), cost
beside accuracy (``bench.reporting.costs``) and the provenance of every number, all in one report.html. Unfinished grids are
shown as unfinished.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.console import plain
from bench.evaluation.scores import metric_specs
from bench.io import write_text
from bench.provenance import installed_version
from bench.reporting.costs import DeviceGroup, compute_matched, cost_groups, cost_markdown, figure1c_beside, figure_panels
from bench.reporting.data import ReportData, compute_table, load_report_data, method_order, provenance
from bench.reporting.stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    EXACT_MAX_CASES,
    STATISTICS_PACKAGES,
    bootstrap,
    discriminative_power,
    limit_of_tests,
    pairwise_tests,
    per_case_scores,
)
from bench.reporting.tables import (
    beside_paper,
    columns_of,
    marked_rows,
    penalises_misses,
    penalty_range,
    penalty_rows,
    penalty_text,
    render_latex,
    render_markdown,
    table1,
)
from bench.runs.state import grid_counts


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def statistics(data: ReportData, table: pd.DataFrame) -> list[dict]:
    """Per fraction with two or more finished methods: methods by mean Dice (best first), every
    pairwise test (Holm-adjusted), the sentence saying that no pair can reach alpha where none can
    (``limit``), cluster-bootstrap intervals and ranks, and the discriminative power."""
    scores = per_case_scores(data.results)
    out = []
    for fraction in data.protocol.fractions:
        ranked = table[(table["data"] == fraction) & table["Avg_mean"].notna()].sort_values("Avg_mean", ascending=False)
        methods = ranked["method"].tolist()
        if len(methods) < 2:
            continue
        tests = pairwise_tests(scores, fraction, methods)
        out.append(
            {
                "fraction": fraction,
                "heading": data.protocol.fraction_title(fraction),
                "order": methods,
                "tests": tests,
                "limit": limit_of_tests(tests, len(methods)),
                "bootstrap": bootstrap(scores, fraction, methods),
                "power": discriminative_power(scores, fraction, methods),
            }
        )
    return out


def statistics_csv(stats: list[dict]) -> tuple[str, str]:
    """The pairwise tests and the bootstrap summaries as CSV, for a paper's supplement."""
    tests = pd.DataFrame(
        [t for st in stats for t in st["tests"]],
        columns=["data", "first", "second", "cases", "draws", "mean_diff", "p_value", "test", "p_holm", "significant"],
    )
    rows = [
        {
            "data": st["fraction"],
            "method": b.method,
            "cases": b.cases,
            "draws": b.draws,
            "mean": b.mean,
            "ci_low": b.low,
            "ci_high": b.high,
            **{f"p_rank{k + 1}": v for k, v in enumerate(b.rank_shares)},
        }
        for st in stats
        for b in st["bootstrap"]
    ]
    return tests.to_csv(index=False, float_format="%.6g"), pd.DataFrame(rows).to_csv(index=False, float_format="%.6g")


def render_html(
    data: ReportData,
    tables: dict[str, pd.DataFrame],
    paper: dict,
    counts: dict,
    order: list[str],
    figures: dict[str, bytes],
    stats: list[dict],
    costs: dict,
) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = lambda v, digits=1: "-" if v is None or v != v else f"{v:.{digits}f}"
    env.filters["signed"] = lambda v: "-" if v is None or v != v else f"{v:+.1f}"
    env.filters["millions"] = lambda v: "-" if v is None else f"{v / 1e6:.2f}"

    def fractions(metric: str) -> list:
        rows = [(f, data.protocol.fraction_title(f), marked_rows(tables[metric], f, counts, metric)) for f in data.protocol.fractions]
        return [row for row in rows if row[2]]

    order_of = data.protocol.fractions
    metrics = []  # every metric but Dice, which is Table 1, in registration order
    for spec in metric_specs()[1:]:
        extra = {f: penalty_rows(tables[spec.name], data.results, f, spec.name) for f in order_of} if penalises_misses(spec) else {}
        penalty = penalty_range([r for rows in extra.values() for r in rows])
        metrics.append(
            {
                "spec": spec,
                "fractions": fractions(spec.name),
                "extra": extra,
                "penalty": penalty_text(spec, penalty) if extra else "",
                "unscored": unscored(data.results, spec.name),
            }
        )
    status = sorted(data.states, key=lambda s: (order_of.index(s.data), order.index(s.method) if s.method in order else 99, s.repeat))
    template = env.get_template("report.html.j2")
    return template.render(
        title="TP-Mamba benchmark report",
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        runs_dir=str(data.runs_dir),
        stamps=data.stamps,
        scoring=data.scoring,
        protocol=data.protocol.caption,
        synthetic=data.synthetic,
        columns=columns_of(tables["dice"]),
        fractions=fractions("dice"),
        metrics=metrics,
        dice_about=metric_specs()[0].about,
        beside=beside_paper(tables["dice"], paper, counts, data.protocol),
        figures={name: _data_uri(png) for name, png in figures.items()},
        statistics=stats,
        resamples=BOOTSTRAP_RESAMPLES,
        alpha=ALPHA,
        exact_max_cases=EXACT_MAX_CASES,
        statistics_versions=", ".join(f"{name} {installed_version(name)}" for name in STATISTICS_PACKAGES),
        compute=compute_table(data, order),
        costs=costs,
        extras=data.extras,
        provenance=provenance(data),
        status=status,
        configs=data.configs,
        grid_total=len(data.states),
        grid_done=sum(s.state == "done" for s in data.states),
    )


def unscored(results: pd.DataFrame, metric: str) -> list[str]:
    """The runs (``method fraction #draw``) scored before ``metric`` existed: no value for any organ
    of any case (an organ absent from both maps is NaN too, but never every organ)."""
    if results.empty:
        return []
    values = pd.to_numeric(results[metric], errors="coerce")
    missing = values.isna().groupby([results["method"], results["data"], results["repeat"]]).all()
    return [f"{method} {data} #{repeat}" for (method, data, repeat), gone in missing.items() if gone]


def build_figures(
    data: ReportData, table: pd.DataFrame, order: list[str], out_dir: Path, stats: list[dict], groups: list[DeviceGroup]
) -> dict[str, bytes]:
    """The report's figures, each also saved as a PNG beside it for papers and slides."""
    from bench.reporting.figures import (
        adapter_figure,
        convergence_figure,
        cost_figure,
        data_efficiency_figure,
        method_colors,
        organ_boxplot_figure,
        save_png,
        significance_heatmap,
    )

    colors = method_colors(order)
    figures: dict[str, bytes] = {}
    if data.curves:
        figures["fig4_convergence"] = save_png(convergence_figure(data.curves, colors, data.protocol), out_dir / "fig4_convergence.png")
    if table["Avg_mean"].notna().any():
        figures["fig1a_dice_vs_data"] = save_png(data_efficiency_figure(table, colors, data.protocol), out_dir / "fig1a_dice_vs_data.png")
    for fraction in data.protocol.fractions:
        methods = [
            m for m in order if not data.results.empty and ((data.results["data"] == fraction) & (data.results["method"] == m)).any()
        ]
        if methods:
            fig = organ_boxplot_figure(data.results, fraction, methods, colors, data.protocol.percent(fraction), data.labels)
            figures[f"organs_{fraction}"] = save_png(fig, out_dir / f"organs_{fraction}.png")
    for st in stats:
        if st["limit"]:  # an empty heatmap would read as "no differences"; the report says why instead
            continue
        title = f"Pairwise Wilcoxon, Holm-adjusted p: {data.protocol.fraction_title(st['fraction'])}"
        figures[f"significance_{st['fraction']}"] = save_png(
            significance_heatmap(st["tests"], st["order"], title), out_dir / f"significance_{st['fraction']}.png"
        )
    if panels := figure_panels(groups):
        figures["cost_vs_dice"] = save_png(cost_figure(panels, colors, data.protocol), out_dir / "cost_vs_dice.png")
    flops = data.extras.get("flops")
    if flops and flops.get("adapters"):
        title = f"GMACs added per ViT block, input {flops['input']}^3, r = {flops['rank']}"
        figures["fig1c_adapters"] = save_png(adapter_figure(flops["adapters"], title), out_dir / "fig1c_adapters.png")
    return figures


def write_report(runs_dir: Path, out_dir: Path, paper: dict) -> dict[str, Path]:
    """Write Table 1 (+/- and compact, Markdown and LaTeX, CSV), a table of every other registered
    metric (NSD, HD95, a plugin's: table_<name>.md/.csv), cases.csv, the measured costs
    (table_costs.md), the statistics (pairwise tests, bootstrap) as CSV, the figures and report.html.

    Returns {file name: path}. Raises UserError when the folder holds no runs or a run file is broken.
    """
    data = load_report_data(runs_dir)
    counts = grid_counts(data.states)
    for (fraction, method, _), config in data.configs.items():
        if (fraction, method) in counts:
            prov = config.provenance
            counts[(fraction, method)]["title"] = "; ".join(part for part in (prov.method_title, prov.method_source) if part)
    order = method_order({s.method for s in data.states}, paper)
    specs = metric_specs()
    tables = {m.name: table1(data.results, counts, order, m.name, data.protocol.fractions, data.labels) for m in specs}
    table = tables["dice"]
    stats = statistics(data, table)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tests_csv, bootstrap_csv = statistics_csv(stats)
    texts = {
        "table1.md": render_markdown(data, table, paper, counts),
        "table1_compact.md": render_markdown(data, table, paper, counts, compact=True),
        "table1.tex": render_latex(data, table, counts),
        "table1_compact.tex": render_latex(data, table, counts, compact=True),
        "table1.csv": table.to_csv(index=False, float_format="%.2f"),
        **{f"table_{m.name}.md": render_markdown(data, tables[m.name], paper, counts, metric=m.name) for m in specs[1:]},
        **{f"table_{m.name}.csv": tables[m.name].to_csv(index=False, float_format="%.2f") for m in specs[1:]},
        "pairwise_tests.csv": tests_csv,
        "bootstrap.csv": bootstrap_csv,
        "cases.csv": data.results.to_csv(index=False),
    }
    groups = cost_groups(data, order)
    pairs, unmatched = compute_matched(groups, stats)
    texts["table_costs.md"] = cost_markdown(groups)
    figures = build_figures(data, table, order, out_dir, stats, groups)
    costs = {"groups": groups, "pairs": pairs, "unmatched": unmatched, "figure1c": figure1c_beside(data.extras)}
    texts["report.html"] = render_html(data, tables, paper, counts, order, figures, stats, costs)
    paths = {}
    for name, text in texts.items():
        write_text(out_dir / name, text)
        paths[name] = out_dir / name
    for name in figures:
        paths[f"{name}.png"] = out_dir / f"{name}.png"
    return paths


def write_report_once(runs_dir: Path, started: float, say) -> None:
    """The report of a runs folder at the end of a ``bench run`` that began at ``started``: written
    unless another process sharing the folder wrote it, since then, from the same results.csv (the
    processes each end here once every run is finished; they take turns under a lock)."""
    from bench.io import locked, sha256_file
    from bench.runs.files import REPORT_DIGEST, REPORT_DIR, REPORT_LOCK, RESULTS_CSV
    from reports import paper_table1

    out = Path(runs_dir)
    with locked(out / REPORT_LOCK):
        digest = sha256_file(out / RESULTS_CSV) if (out / RESULTS_CSV).exists() else None
        written_from = out / REPORT_DIR / REPORT_DIGEST
        fresh = written_from.exists() and written_from.stat().st_mtime >= started
        if digest is not None and fresh and written_from.read_text() == digest:
            say(f"report: {plain(written_from.parent / 'report.html')} (already written from these results)")
            return
        paths = write_report(out, out / REPORT_DIR, paper_table1())
        if digest is not None:
            write_text(written_from, digest)
        say(f"report: {plain(paths['report.html'])} (tables: {plain(paths['table1.md'].parent)})")
