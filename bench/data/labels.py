"""A dataset's label set: its organ names in label-value order and the short names of its table
columns. BTCV's 13 organs, with the TP-Mamba paper's Table 1 abbreviations, are the built-in
default; a Decathlon-layout dataset brings its own in ``dataset.json`` (nnU-Net's ``labels``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Index i+1 is the label value of ORGANS[i]; 0 is background.
ORGANS: tuple[str, ...] = (
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "portal and splenic veins",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
)
# Column names of the TP-Mamba paper's Table 1, in label order.
ORGAN_COLUMNS: tuple[str, ...] = (
    "Sple",
    "Rkid",
    "Lkid",
    "Gall",
    "Eso",
    "Liver",
    "Sto",
    "Aorta",
    "IVC",
    "Veins",
    "Panc",
    "Rad",
    "Lad",
)
NUM_CLASSES = len(ORGANS) + 1  # background included
LABEL_VALUES = frozenset(range(NUM_CLASSES))
_KNOWN_COLUMNS = dict(zip(ORGANS, ORGAN_COLUMNS, strict=True))


@dataclass(frozen=True)
class LabelSet:
    """Foreground organs in value order (organ i has label value i + 1; 0 is background)."""

    organs: tuple[str, ...] = ORGANS

    @property
    def num_classes(self) -> int:
        return len(self.organs) + 1

    @property
    def values(self) -> frozenset[int]:
        return frozenset(range(self.num_classes))

    @property
    def columns(self) -> tuple[str, ...]:
        """Table column names: Table 1's for BTCV's organs, a short form of the name otherwise."""
        return tuple(_KNOWN_COLUMNS.get(organ) or column_name(organ) for organ in self.organs)

    @property
    def is_btcv(self) -> bool:
        return self.organs == ORGANS


BTCV_LABELS = LabelSet()


def column_name(organ: str) -> str:
    """``duodenum`` -> ``Duod``, ``urinary bladder`` -> ``UBla``: short enough for a table column."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", organ) if w]
    if not words:
        return organ[:5]
    if len(words) == 1:
        return words[0][:5].capitalize()
    return "".join(w[0].upper() for w in words[:-1]) + words[-1][:3].capitalize()


@dataclass(frozen=True)
class LabelMatch:
    """Label maps of one label set (``source``, a model's) scored against references of another
    (``target``, a dataset's), organ by organ name: what ``bench score --label-map by-name`` does."""

    source: LabelSet
    target: LabelSet

    @property
    def matched(self) -> tuple[str, ...]:
        """Organs both name, in the target's order: the ones scored."""
        return tuple(o for o in self.target.organs if o in self.source.organs)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Target organs the source does not name: not scored."""
        return tuple(o for o in self.target.organs if o not in self.source.organs)

    @property
    def unused(self) -> tuple[str, ...]:
        """Source organs the target does not name: their voxels count as background."""
        return tuple(o for o in self.source.organs if o not in self.target.organs)

    def lookup(self):
        """Source value -> target value (0 for an organ the target lacks), as a numpy table."""
        import numpy as np

        table = np.zeros(self.source.num_classes, dtype=np.uint8)
        for i, organ in enumerate(self.source.organs, start=1):
            table[i] = self.target.organs.index(organ) + 1 if organ in self.target.organs else 0
        return table
