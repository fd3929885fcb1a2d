"""The fixed, committed BTCV splits (see make_splits.py for how they were drawn)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Splits:
    test: tuple[str, ...]
    train: dict[str, tuple[tuple[str, ...], ...]]  # fraction -> draws -> case ids
    seed: int

    @property
    def fractions(self) -> tuple[str, ...]:
        return tuple(self.train)

    def cases_per_draw(self, fraction: str) -> int:
        return len(self.train[fraction][0])

    def percent(self, fraction: str) -> str:
        """``25pct`` -> ``25%``."""
        return fraction.removesuffix("pct") + "%"

    def title(self, fraction: str) -> str:
        """``25% (6 cases)``; the full set reads ``100% of the training data (24 cases)``."""
        of = " of the training data" if fraction == self.fractions[0] else ""
        return f"{self.percent(fraction)}{of} ({self.cases_per_draw(fraction)} cases)"

    def all_ids(self) -> tuple[str, ...]:
        ids = set(self.test)
        for draws in self.train.values():
            for draw in draws:
                ids.update(draw)
        return tuple(sorted(ids))


@functools.cache
def load_splits() -> Splits:
    """The committed splits (read once per process)."""
    raw = json.loads(resources.files(__name__).joinpath("btcv.json").read_text())
    return Splits(
        test=tuple(raw["test"]),
        train={name: tuple(tuple(draw) for draw in draws) for name, draws in raw["train"].items()},
        seed=raw["seed"],
    )


# The data fractions, largest first, as the committed splits define them.
FRACTIONS = load_splits().fractions
