"""The fixed, committed BTCV splits (see make_splits.py for how they were drawn)."""

from __future__ import annotations

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

    def all_ids(self) -> tuple[str, ...]:
        ids = set(self.test)
        for draws in self.train.values():
            for draw in draws:
                ids.update(draw)
        return tuple(sorted(ids))


def load_splits() -> Splits:
    raw = json.loads(resources.files(__name__).joinpath("btcv.json").read_text())
    return Splits(
        test=tuple(raw["test"]),
        train={name: tuple(tuple(draw) for draw in draws) for name, draws in raw["train"].items()},
        seed=raw["seed"],
    )
