"""The Dice table ``bench run`` prints when its grid is done, with the report's warning when the
test cases cannot show a difference between the methods in it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.console import plain
from bench.reporting.stats import limit_of_tests, pairwise_tests, per_case_scores
from bench.runs.results import load_results, organ_table, results_labels


def print_dice_table(console: Console, runs_dir: Path, methods: list[str], data: str, caption: str) -> None:
    """The Dice table of ``methods`` at one fraction (mean over the finished draws), from results.csv,
    and the report's line when its test cases cannot show a difference between these methods."""

    results = load_results(runs_dir, methods, data)
    if results.empty:
        return
    labels = results_labels(results)
    columns = (*labels.columns, "Avg")
    table_df = organ_table(results, "dice", labels)
    table = Table(title=f"Dice (%) on the test cases, {data} of the training data", caption=plain(caption))
    table.add_column("Method")
    for column in columns:
        table.add_column(column, justify="right")
    order = {m: i for i, m in enumerate(methods)}
    for _, row in sorted(table_df.iterrows(), key=lambda kv: order.get(kv[1]["method"], 99)):
        n = int(row["repeats"])
        cells = [row[f"{c}_mean"] for c in columns]
        table.add_row(plain(f"{row['method']} ({n} draw{'s' if n != 1 else ''})"), *[f"{v:.1f}" if v == v else "-" for v in cells])
    console.print(table)
    shown = list(table_df["method"])
    limit = limit_of_tests(pairwise_tests(per_case_scores(results), data, shown), len(shown))
    if limit:
        console.print(f"[yellow]{plain(limit)}[/yellow]", soft_wrap=True)
