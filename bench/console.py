"""How the harness talks on the terminal: text printed literally, and progress bars.

Rich reads ``[...]`` as markup, and a variant's label (``tpmamba[planes=dw,r=48]``), a path or a
message can hold brackets: every such string is passed through :func:`plain` before it is printed
inside markup, so it shows as written.

Progress: bars on a terminal; where the output is a log file, a line per finished step instead
(:func:`log_line`); nothing of either under ``bench run --quiet`` (``BENCH_QUIET=1``, which the
processes and jobs a command starts inherit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

QUIET_ENV = "BENCH_QUIET"


def plain(value: object) -> str:
    """``value`` as text that rich prints literally (brackets escaped)."""
    return escape(str(value))


def quiet() -> bool:
    """Whether progress (bars, per-case lines) is switched off for this process and its jobs."""
    return os.environ.get(QUIET_ENV) == "1"


def progress_bar(console: Console) -> Progress:
    """A progress bar whose description and ``status`` field are printed literally; off when quiet."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet(),
    )


def log_line(console: Console, text: str) -> None:
    """A progress line where a bar cannot be drawn (the output is not a terminal); none when quiet."""
    if not quiet() and not console.is_terminal:
        console.print(text, highlight=False, soft_wrap=True)


_windows: Callable[[int, int], None] | None = None  # where sliding-window batches are reported now


def report_windows(done: int, total: int) -> None:
    """A batch of sliding windows predicted (``done`` of ``total``), shown on the test-case bar if one is up."""
    if _windows is not None:
        _windows(done, total)


class CaseProgress:
    """The test cases of one run: a bar (case k of n, ETA; the sliding-window batches of the case
    being predicted, for a volume of many), or a line per case in a log; written for ``on_case``
    too (the --jobs board reads it from the run folder)."""

    def __init__(self, console: Console, name: str, total: int, on_case: Callable[[int, int], None] | None = None):
        self.console, self.name, self.total, self.on_case = console, name, total, on_case
        self.bar = progress_bar(console)
        self.task = self.bar.add_task(f"testing {plain(name)}", total=total, status="")
        self.done, self.started = 0, time.monotonic()

    def __enter__(self) -> CaseProgress:
        global _windows
        self.bar.__enter__()
        _windows = self.windows
        if self.on_case:
            self.on_case(1, self.total)
        return self

    def windows(self, done: int, total: int) -> None:
        self.bar.update(self.task, status=f"case {self.done + 1}: windows {done}/{total}")

    def case_done(self, case_id: str) -> None:
        self.done += 1
        now = time.monotonic()
        self.bar.update(self.task, completed=self.done, status=f"case {case_id} done")
        log_line(self.console, f"{self.name}: tested case {case_id} ({self.done}/{self.total}) in {now - self.started:.1f} s")
        self.started = now
        if self.on_case and self.done < self.total:
            self.on_case(self.done + 1, self.total)

    def __exit__(self, *exc) -> None:
        global _windows
        _windows = None
        self.bar.__exit__(*exc)
