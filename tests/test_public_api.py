"""The contract plugins are written against (``sam3d_bench``) keeps its names and signatures.

``tests/public_api.txt`` is the contract as released; a change here breaks someone's method. When a
change is deliberate, say so in docs/add-a-method.md and rewrite the file:
``python -m tests.test_public_api > tests/public_api.txt``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import sam3d_bench

SNAPSHOT = Path(__file__).with_name("public_api.txt")


def describe(name: str, obj: object) -> list[str]:
    """One line per thing a plugin can rely on: a function's signature, a dataclass's fields, a
    class's constructor and public methods, a protocol's attributes, a constant's type (and keys)."""
    if typing.get_origin(obj) is not None:  # a type alias such as Family
        return [f"{name} = {obj}"]
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return [f"exception {name}({', '.join(base.__name__ for base in obj.__bases__)})"]
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        fields = ", ".join(f"{f.name}: {f.type}" + ("" if _required(f) else " = ...") for f in dataclasses.fields(obj))
        return [f"dataclass {name}({fields})", *_methods(name, obj)]
    if isinstance(obj, type) and getattr(obj, "_is_protocol", False):
        hints = [f"  {name}.{attr}: {kind}" for attr, kind in sorted(typing.get_type_hints(obj).items())]
        return [f"protocol {name}", *hints, *_methods(name, obj)]
    if isinstance(obj, type):
        return [f"class {name}{inspect.signature(obj)}", *_methods(name, obj)]
    if callable(obj):
        return [f"def {name}{inspect.signature(obj)}"]
    keys = f" with keys {', '.join(map(str, sorted(obj)))}" if isinstance(obj, dict) else ""
    return [f"{name}: {type(obj).__name__}{keys}"]


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _methods(name: str, cls: type) -> list[str]:
    out = []
    for attr, value in sorted(vars(cls).items()):
        if attr.startswith("_"):
            continue
        if isinstance(value, property):
            out.append(f"  {name}.{attr}: property")
        elif inspect.isfunction(value):
            out.append(f"  {name}.{attr}{inspect.signature(value)}")
    return out


def contract() -> list[str]:
    lines = []
    for name in sorted(sam3d_bench.__all__):
        lines += describe(name, getattr(sam3d_bench, name))
    return lines


def test_every_exported_name_exists():
    missing = [name for name in sam3d_bench.__all__ if not hasattr(sam3d_bench, name)]
    assert not missing


def test_the_contract_is_unchanged():
    expected = SNAPSHOT.read_text().splitlines()
    now = contract()
    gone = [line for line in expected if line not in now]
    new = [line for line in now if line not in expected]
    assert not gone and not new, (
        f"the plugin contract changed: {len(gone)} lines gone or changed, {len(new)} new "
        f"(gone: {gone[:3]}, new: {new[:3]}); if deliberate, update docs/add-a-method.md and {SNAPSHOT.name}"
    )


def test_the_check_sees_a_changed_signature():
    def register_method(name, *, family=None):  # the real one with its fields gone
        return None

    assert describe("register_method", register_method)[0] not in contract()


def test_the_contract_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "add-a-method.md").read_text()
    undocumented = [name for name in sam3d_bench.__all__ if f"`{name}`" not in doc]
    assert not undocumented


if __name__ == "__main__":
    print("\n".join(contract()))
