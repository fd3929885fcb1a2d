"""``bench new-method``: a small installable package that registers one working method through the
public contract (``sam3d_bench``), with its own tests; the start of a plugin.

The templates (``templates/``) are a SAM adapter (a slice-mixing bottleneck after every block of the
shared frozen ViT-B, the authors' decoder) and a 3D network (MONAI's UNet). ``$name``-style fields
are filled with :class:`string.Template`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bench.errors import UserError

TEMPLATES = Path(__file__).parent / "templates"
# The built-in method each template's README and closing hint suggest running beside the new one.
COMPARE_WITH = {"sam-adapter": "samed", "3d-net": "unetr"}


@dataclass(frozen=True)
class MethodPackage:
    """What ``bench new-method`` wrote: the folder, its distribution and import names, the files."""

    root: Path
    name: str
    family: str
    distribution: str
    package: str
    files: tuple[Path, ...]

    @property
    def compare_with(self) -> str:
        return COMPARE_WITH[self.family]


def write_method_package(name: str, family: str, out: Path, taken: set[str]) -> MethodPackage:
    """Write the package for method ``name`` of ``family`` into ``out`` (absent or empty); ``taken``:
    the names already registered. UserError for a bad name, an unknown family or a used folder."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UserError(f"method name {name!r} must be lower-case letters, digits and _, starting with a letter")
    if name in taken:
        raise UserError(f"a method named {name!r} is registered already (bench list); choose another name")
    if family not in COMPARE_WITH:
        raise UserError(f"--family must be one of {', '.join(COMPARE_WITH)}, got {family!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; choose another --out")
    package = f"sam3d_{name}"
    fields = dict(
        name=name, family=family, package=package, distribution=f"sam3d-{name.replace('_', '-')}", compare_with=COMPARE_WITH[family]
    )
    targets = {
        "pyproject.toml.tmpl": out / "pyproject.toml",
        "README.md.tmpl": out / "README.md",
        f"{family}.py.tmpl": out / package / "__init__.py",
        f"test_{family}.py.tmpl": out / "tests" / f"test_{name}.py",
    }
    for template, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template((TEMPLATES / template).read_text()).substitute(fields))
    return MethodPackage(out, name, family, fields["distribution"], package, tuple(targets.values()))
