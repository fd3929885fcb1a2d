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
    text = resources.files(__name__).joinpath("paper_table1.csv").read_text()
    rows = csv.DictReader(io.StringIO("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))))
    return {(r["data"], r["method"]): {c: float(r[c]) for c in (*ORGAN_COLUMNS, "Avg")} for r in rows}
