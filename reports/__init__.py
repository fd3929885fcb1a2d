"""Published numbers the reports compare against, kept as data beside the report templates."""

from __future__ import annotations

import csv
import io
from importlib import resources

from bench.data.labels import ORGAN_COLUMNS

# The paper's own method: drawn in the paper's red in every figure.
PAPER_METHOD = "tpmamba"


def paper_table1() -> dict[tuple[str, str], dict[str, float]]:
    """The TP-Mamba paper's Table 1: {(data fraction, method name): {column: Dice %}} incl. "Avg"."""
    rows = _rows("paper_table1.csv")
    return {(r["data"], r["method"]): {c: float(r[c]) for c in (*ORGAN_COLUMNS, "Avg")} for r in rows}


def paper_figure1c() -> dict[str, dict]:
    """The numbers the TP-Mamba paper gives for its Figure 1(c): {adapter: {"title", "gmacs_per_block",
    "ratio_to_lora"}} at a 96^3 input and r = 96 (``bench flops``'s adapter names)."""
    return {
        r["adapter"]: {"title": r["title"], "gmacs_per_block": float(r["gmacs_per_block"]), "ratio_to_lora": float(r["ratio_to_lora"])}
        for r in _rows("paper_figure1c.csv")
    }


def _rows(name: str) -> csv.DictReader:
    """A CSV kept here, its '#' lines (where the numbers come from) left out."""
    text = resources.files(__name__).joinpath(name).read_text()
    return csv.DictReader(io.StringIO("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))))
