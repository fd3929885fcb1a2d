"""How the harness talks on the terminal: text printed literally, and progress bars.

Rich reads ``[...]`` as markup, and a variant's label (``tpmamba[planes=dw,r=48]``), a path or a
message can hold brackets: every such string is passed through :func:`plain` before it is printed
inside markup, so it shows as written.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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
