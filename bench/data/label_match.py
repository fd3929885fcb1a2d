"""Label maps of one label set scored against another's references, organ by organ meaning
(``bench.data.labels.how_alike``), a mapping file's entries first: what ``bench score --label-map``
does, and why each pair was made."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.data.labels import LabelSet, how_alike
from bench.errors import DataError


@dataclass(frozen=True)
class OrganPair:
    """A source organ scored as a target organ, and why: exact, canonical, synonym or mapping file."""

    source: str
    target: str
    how: str


def match_organs(source: Sequence[str], target: Sequence[str], mapping: Mapping[str, str | None] | None = None) -> tuple[OrganPair, ...]:
    """Pairs of ``source`` and ``target`` organ names that mean one organ, in the target's order.

    ``mapping`` (source name, or its label value as a string, -> target name, or None to leave it
    unscored) is taken as given and settles those names first; the rest are matched by meaning.
    DataError (one line) for a mapping naming an organ neither set has, or for a name matching two
    organs of the other set."""
    pairs: dict[str, OrganPair] = {}  # by source
    settled: set[str] = set()
    for key, wanted in (mapping or {}).items():
        name = _source_name(str(key), source)
        if wanted is not None and wanted not in target:
            shown = ", ".join(target[:8]) + (f" and {len(target) - 8} more" if len(target) > 8 else "")
            raise DataError(f"the mapping sends {key!r} to {wanted!r}, which the dataset's labels do not name ({shown})")
        settled.add(name)
        if wanted is not None:
            if taken := [p.source for p in pairs.values() if p.target == wanted]:
                raise DataError(f"the mapping sends both {taken[0]!r} and {name!r} to {wanted!r}")
            pairs[name] = OrganPair(name, wanted, "mapping file")
    mapped_targets = {p.target for p in pairs.values()}
    for name in source:
        if name in settled:
            continue
        found = [(t, how) for t in target if t not in mapped_targets and (how := how_alike(name, t))]
        if len(found) > 1:
            raise DataError(
                f"{name!r} matches {len(found)} organs of the dataset ({', '.join(repr(t) for t, _ in found)}); "
                "settle it with --label-map FILE"
            )
        if found:
            pairs[name] = OrganPair(name, *found[0])
    by_target: dict[str, list[str]] = {}
    for pair in pairs.values():
        by_target.setdefault(pair.target, []).append(pair.source)
    for organ, names in by_target.items():
        if len(names) > 1:
            raise DataError(f"{' and '.join(repr(n) for n in names)} both match {organ!r}; settle it with --label-map FILE")
    return tuple(sorted(pairs.values(), key=lambda p: list(target).index(p.target)))


def _source_name(key: str, source: Sequence[str]) -> str:
    """A mapping key: a source organ's name, or its label value (1 is the first organ)."""
    if key in source:
        return key
    if key.isdigit() and 1 <= int(key) <= len(source):
        return source[int(key) - 1]
    raise DataError(f"the mapping names {key!r}, which is neither an organ nor a label value of the predictions' labels")


@dataclass(frozen=True)
class LabelMatch:
    """Label maps of one label set (``source``, a model's) scored against references of another
    (``target``, a dataset's), organ by organ meaning (``match_organs``),
    ``mapping`` (a mapping file's entries) first: what ``bench score --label-map`` does."""

    source: LabelSet
    target: LabelSet
    mapping: tuple[tuple[str, str | None], ...] = ()

    @functools.cached_property
    def pairs(self) -> tuple[OrganPair, ...]:
        """Source organ -> target organ and why, in the target's order; DataError when ambiguous."""
        return match_organs(self.source.organs, self.target.organs, dict(self.mapping))

    @property
    def matched(self) -> tuple[str, ...]:
        """Target organs some source organ is scored as: the ones scored."""
        return tuple(p.target for p in self.pairs)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Target organs no source organ means: not scored."""
        return tuple(o for o in self.target.organs if o not in self.matched)

    @property
    def unused(self) -> tuple[str, ...]:
        """Source organs that mean no target organ: their voxels count as background."""
        used = {p.source for p in self.pairs}
        return tuple(o for o in self.source.organs if o not in used)

    def lookup(self):
        """Source value -> target value (0 for an organ the target lacks), as a numpy table."""
        import numpy as np

        table = np.zeros(self.source.num_classes, dtype=self.target.dtype)
        for pair in self.pairs:
            table[self.source.organs.index(pair.source) + 1] = self.target.organs.index(pair.target) + 1
        return table
