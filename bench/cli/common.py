"""What every ``bench`` command shares: the consoles, method-name lists and the translation of
errors a user can fix into one line and exit code 2 (never a traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from bench.console import plain
from bench.errors import RunsFailed, UserError

# Logs and CI are not terminals; give the 15-column organ tables room there too.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def _protocols_help() -> str:
    """The --protocol help, from the built-in protocols themselves (a new one is listed without an edit here)."""
    from splits import DEFAULT_PROTOCOL, built_in_protocols, load_protocol

    described = "; ".join(
        f"{name}{' (default)' if name == DEFAULT_PROTOCOL else ''}: {load_protocol(name).description}" for name in built_in_protocols()
    )
    return f"Which cases each draw trains and tests on (--repeats picks draws or folds). {described}; or a protocol file."


def fractions_help(what: str) -> str:
    """A --data help, with the fractions of the built-in protocols read from them."""
    from splits import built_in_protocols, load_protocol

    fractions = dict.fromkeys(f for name in built_in_protocols() for f in load_protocol(name).fractions)
    return f"{what}: one of the protocol's fractions ({', '.join(fractions)} in the built-in protocols)."


ProtocolOption = Annotated[str, typer.Option(help=_protocols_help())]
PluginOption = Annotated[
    list[str] | None,
    typer.Option("--plugin", help="Import MODULE to register its methods (repeatable; BENCH_PLUGINS=a,b does the same)."),
]


def method_names(text: str) -> list[str]:
    """``a,b[k=v,...]`` -> [a, b[k=v,...]]; ``all`` -> every registered method; ``none`` -> []."""
    from bench.plan.runs import split_method_list
    from methods import list_methods

    names = split_method_list(text)
    if names == ["all"]:
        return [info.name for info in list_methods()]
    return [] if names == ["none"] else names


def _users_to_fix(exc: Exception) -> bool:
    """An unknown method name, a plugin the registry cannot use, a protocol that cannot be used.
    Whoever raised it is imported already: the CLI does not import torch to catch it."""
    from splits import ProtocolError

    if isinstance(exc, ProtocolError):
        return True
    if "methods.registry" not in sys.modules:
        return False
    from methods.registry import PluginError, UnknownMethodError

    return isinstance(exc, UnknownMethodError | PluginError)


def use_plugins(modules: list[str] | None) -> None:
    """Load ``--plugin`` modules in this process and every run it starts (before any method is looked up)."""
    if modules:
        from methods.plugins import name_modules

        name_modules(modules)


def user_errors(fn: F) -> F:
    """Turn the errors a user can fix into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, KeyError, ValueError) as exc:
            if not isinstance(exc, UserError) and not _users_to_fix(exc):
                raise
            err_console.print(f"[red]error:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            from bench.io import is_storage_error, storage_message

            if not is_storage_error(exc):
                raise
            err_console.print(f"[red]error:[/red] {plain(storage_message(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except RunsFailed as exc:  # the grid went on; what finished is saved and reported
            err_console.print(f"[red]failed:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished epochs are checkpointed; rerun the same command to resume")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]
