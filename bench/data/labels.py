"""A dataset's label set: its organ names in label-value order and the short names of its table
columns. BTCV's 13 organs, with the TP-Mamba paper's Table 1 abbreviations, are the built-in
default; a Decathlon-layout dataset brings its own in ``dataset.json`` (nnU-Net's ``labels``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The 30 labelled BTCV training cases.
BTCV_LABELLED_IDS: tuple[str, ...] = tuple(f"{i:04d}" for i in [*range(1, 11), *range(21, 41)])
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


@dataclass(frozen=True)
class LabelSet:
    """Foreground organs in value order (organ i has label value i + 1; 0 is background)."""

    organs: tuple[str, ...] = ORGANS
    # nnU-Net's "ignore" label: the value (N + 1) of voxels nobody annotated, in label files only.
    ignore: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.organs) + 1

    @property
    def values(self) -> frozenset[int]:
        """The values a prediction may hold."""
        return frozenset(range(self.num_classes))

    @property
    def file_values(self) -> frozenset[int]:
        """The values a label file may hold: the classes and the ignore label."""
        return self.values | ({self.ignore} if self.ignore is not None else set())

    @property
    def dtype(self) -> str:
        """The smallest unsigned integer type that holds every value of the set's label maps."""
        return "uint8" if max(self.file_values) <= 255 else "uint16"

    @property
    def columns(self) -> tuple[str, ...]:
        """Table column names, one per organ and all different (``table_columns``)."""
        return table_columns(self.organs)

    @property
    def is_btcv(self) -> bool:
        return self.organs == ORGANS


BTCV_LABELS = LabelSet()


def column_name(organ: str, letters: int | None = None) -> str:
    """A short table column for an organ: ``duodenum`` -> ``Duode``, ``urinary bladder`` -> ``UBla``,
    with its side and any number kept: ``humerus_left`` -> ``HumL``, ``rib_left_3`` -> ``RibL3``,
    ``vertebrae_T12`` -> ``VerT12``. ``letters``: how many letters of the last word to keep (default
    5 for a lone word, else 3)."""
    side, words, codes = "", [], []
    for word in words_of(organ):
        if word in SIDE_WORDS and not side:
            side = SIDE_WORDS[word]
        elif any(ch.isdigit() for ch in word):
            codes.append(word.upper())
        elif word not in FILLER_WORDS:
            words.append(word)
    if not words:
        return (organ[:5] or "?") if not (side or codes) else side + "".join(codes)
    tagged = bool(side or codes)
    keep = letters or (3 if tagged or len(words) > 1 else 5)
    base = "".join(w[0].upper() for w in words[:-1]) + words[-1][:keep].capitalize()
    return base + side + "".join(codes)


def table_columns(organs: tuple[str, ...]) -> tuple[str, ...]:
    """One distinct column name per organ: Table 1's for an organ that means one of BTCV's (by name,
    ``how_alike``), a ``column_name`` otherwise; where two still coincide, each keeps
    more letters of its name, and in the end its label value."""
    btcv = {meaning(o): c for o, c in zip(ORGANS, ORGAN_COLUMNS, strict=True)}
    columns = [btcv.get(meaning(o)) or column_name(o) for o in organs]
    for letters in range(4, 13):
        clashes = _clashing(columns)
        if not clashes:
            return tuple(columns)
        for i in clashes:
            columns[i] = column_name(organs[i], letters)
    for i in _clashing(columns):
        columns[i] = f"{columns[i]}{i + 1}"
    return tuple(columns)


def _clashing(columns: list[str]) -> list[int]:
    seen: dict[str, list[int]] = {}
    for i, c in enumerate(columns):
        seen.setdefault(c.lower(), []).append(i)
    return [i for group in seen.values() if len(group) > 1 for i in group]


# Organ names as datasets spell them, compared by meaning: ``kidney_right``, ``Right Kidney`` and
# ``kidney (R)`` are one organ, ``gall bladder`` is ``gallbladder``, AMOS's ``postcava`` is BTCV's
# ``inferior vena cava``. Two names are the same organ when their canonical forms are equal, or when
# the synonym table gives them one. The canonical form of a name is its side (left, right or none:
# the words ``left``/``right``/``l``/``r``/``lt``/``rt`` in any position) and its other words, lower
# case, each made singular, joined without separators (so spelled-out and joined words agree), with
# ``of``, ``the`` and ``and`` left out. Anything the table does not settle, a mapping file does
# (``bench score --label-map FILE``; ``bench.data.label_match``).

SIDE_WORDS = {"left": "L", "l": "L", "lt": "L", "right": "R", "r": "R", "rt": "R"}
FILLER_WORDS = {"of", "the", "and"}

# One line per organ: the name the table settles on, then what datasets and papers also call it.
# A synonym may carry a side (MONAI's BTCV short names "rkid", "lad"), the organ then has that side.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "inferior vena cava": ("postcava", "ivc", "vena cava inferior"),  # AMOS: postcava
    "portal and splenic veins": ("portal vein and splenic vein", "portal splenic vein", "veins"),  # TotalSegmentator; MONAI
    "esophagus": ("oesophagus", "eso"),
    "adrenal gland": ("suprarenal gland",),
    "right adrenal gland": ("rad",),
    "left adrenal gland": ("lad",),
    "right kidney": ("rkid",),
    "left kidney": ("lkid",),
    "gallbladder": ("gall",),
    "stomach": ("sto",),
    "pancreas": ("panc",),
    "spleen": ("sple",),
    "urinary bladder": ("bladder",),  # AMOS and WORD: bladder; TotalSegmentator: urinary_bladder
    "small bowel": ("small intestine",),
}


@dataclass(frozen=True)
class Canonical:
    """What a name means for matching: its side (``L``, ``R`` or empty) and its joined words."""

    side: str
    words: str


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words_of(name: str) -> list[str]:
    """A name's words: split at anything not a letter or digit and where lower case meets upper
    (``kidneyLeft``), lower case."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def canonical_form(name: str) -> Canonical:
    """The side and joined singular words of ``name``, before the synonym table."""
    side, kept = "", []
    for word in words_of(name):
        if word in SIDE_WORDS and not side:
            side = SIDE_WORDS[word]
        elif word not in FILLER_WORDS:
            kept.append(_singular(word))
    return Canonical(side, "".join(kept))


def _synonym_index() -> dict[str, Canonical]:
    index: dict[str, Canonical] = {}
    for name, aliases in SYNONYMS.items():
        meant = canonical_form(name)
        for alias in aliases:
            index[canonical_form(alias).words] = meant
    return index


_SYNONYM_INDEX = _synonym_index()


def meaning(name: str) -> Canonical:
    """The canonical form of ``name`` after the synonym table: a synonym with a side ("rad") gives
    the organ that side, one without keeps the name's own ("suprarenal gland right")."""
    form = canonical_form(name)
    meant = _SYNONYM_INDEX.get(form.words)
    if meant is None or (meant.side and form.side and meant.side != form.side):
        return form
    return Canonical(meant.side or form.side, meant.words)


def how_alike(a: str, b: str) -> str | None:
    """``exact``, ``canonical`` or ``synonym`` when ``a`` and ``b`` name one organ; None otherwise."""
    if a == b:
        return "exact"
    if canonical_form(a) == canonical_form(b):
        return "canonical"
    return "synonym" if meaning(a) == meaning(b) else None
