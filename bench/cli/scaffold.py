"""``bench new-method``: write an installable package with one registered method to start from.
Registered on the app by ``bench.cli.__main__``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import console, user_errors
from bench.console import plain


@user_errors
def new_method(
    name: Annotated[str, typer.Argument(help="The method's name in bench list and the tables (lower case, digits, _).")],
    family: Annotated[
        str, typer.Option(help="sam-adapter (adapters in the shared frozen SAM ViT-B) or 3d-net (trained from scratch).")
    ] = "sam-adapter",
    out: Annotated[Path | None, typer.Option(help="Folder to write the package into (absent or empty; default ./NAME).")] = None,
) -> None:
    """Write a small installable package that registers a working method NAME with its tests: the
    start of your method, compared with the built-in ones once installed (pip install -e DIR)."""
    from bench.scaffold import write_method_package
    from methods import list_methods

    written = write_method_package(name, family, out or Path(name), {info.name for info in list_methods()})
    for path in written.files:
        console.print(f"wrote {plain(path)}", highlight=False)
    folder = plain(written.root)
    console.print(
        f"next: pip install -e {folder} && bench run --methods {name},{written.compare_with} --data 12pct  (tests: pytest {folder}/tests)",
        highlight=False,
        soft_wrap=True,
    )
