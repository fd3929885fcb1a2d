"""How the harness talks on the terminal: progress bars and the Dice table.

Rich reads ``[...]`` as markup, and a variant's label (``tpmamba[planes=dw,r=48]``), a path or a
message can hold brackets: every such string is passed through :func:`plain` before it is printed
inside markup, so it shows as written.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def plain(value: object) -> str:
    """``value`` as text that rich prints literally (brackets escaped)."""
    return escape(str(value))


def progress_bar(console: Console) -> Progress:
    """A progress bar whose description and ``status`` field are printed literally."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def print_dice_table(console: Console, runs_dir: Path, methods: list[str], data: str, caption: str) -> None:
    """The Dice table of ``methods`` at one fraction (mean over the finished draws), from results.csv,
    and the report's line when its test cases cannot show a difference between these methods."""
    from bench.results import TABLE_COLUMNS, load_results, organ_table
    from bench.stats import limit_of_tests, pairwise_tests, per_case_scores

    results = load_results(runs_dir, methods, data)
    if results.empty:
        return
    table_df = organ_table(results)
    table = Table(title=f"Dice (%) on the test cases, {data} of the training data", caption=plain(caption))
    table.add_column("Method")
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="right")
    order = {m: i for i, m in enumerate(methods)}
    for _, row in sorted(table_df.iterrows(), key=lambda kv: order.get(kv[1]["method"], 99)):
        n = int(row["repeats"])
        cells = [row[f"{c}_mean"] for c in TABLE_COLUMNS]
        table.add_row(plain(f"{row['method']} ({n} draw{'s' if n != 1 else ''})"), *[f"{v:.1f}" if v == v else "-" for v in cells])
    console.print(table)
    shown = list(table_df["method"])
    limit = limit_of_tests(pairwise_tests(per_case_scores(results), data, shown), len(shown))
    if limit:
        console.print(f"[yellow]{plain(limit)}[/yellow]", soft_wrap=True)
