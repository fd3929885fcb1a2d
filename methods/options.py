"""Options a user gives a method (``--set``, ``name[key=value]``): checked against the method's
``paper`` settings and converted to their types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.names import unknown_hint

# Hyperparameters the harness sets itself (the profile picks the model size), not --set options.
RESERVED_OPTIONS = {"size": "the profile sets it (--profile paper|smoke)"}


def typed_overrides(method: str, paper: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` checked against the options of ``method`` and converted to their types.

    The options are the keys of the method's ``paper`` settings and a value takes the type of that
    setting: true/false for a flag, a whole number for an integer, a number for a float, a comma list
    for a tuple (``features=8,16,32``), text for text. ValueError names the key and what it accepts.
    """
    options = {k: v for k, v in paper.items() if k not in RESERVED_OPTIONS}
    typed = {}
    for key, value in overrides.items():
        if key in RESERVED_OPTIONS:
            raise ValueError(f"option {key!r} of {method!r} cannot be set: {RESERVED_OPTIONS[key]}")
        if key not in options:
            raise ValueError(f"method {method!r} has no option {key!r}; {unknown_hint(key, options, 'its options')}")
        typed[key] = as_type_of(options[key], value, f"option {key!r} of {method!r}")
    return typed


def as_type_of(default: Any, value: Any, what: str) -> Any:
    """``value`` (from the command line, or already typed) as the type of ``default``; ValueError
    naming ``what`` and what it accepts."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{what} takes true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} takes a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what} takes a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple | list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in default):
        items = list(value) if isinstance(value, tuple | list) else str(value).split(",")
        try:
            parsed = tuple(type(default[0])(item.strip()) for item in items) if default else tuple(items)
        except ValueError:
            raise ValueError(f"{what} takes a comma list of numbers like {','.join(map(str, default))}, got {value!r}") from None
        return parsed
    if isinstance(default, str):
        return str(value)
    return value
