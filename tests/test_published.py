from __future__ import annotations

import pytest

from bench.data.labels import ORGAN_COLUMNS
from reports import paper_table1
from tests.conftest import built_in_methods


def test_paper_table1_is_complete_and_named_like_our_methods():
    table = paper_table1()
    methods = {info.name for info in built_in_methods()}
    # The paper's eleven rows, plus nnU-Net's own pipeline, which the paper did not run.
    assert {m for _, m in table} == methods - {"nnunetv2"} and len(methods) == 12
    assert {d for d, _ in table} == {"100pct", "25pct", "12pct"} and len(table) == 33
    assert table[("100pct", "tpmamba")]["Avg"] == 84.8 and table[("12pct", "vnet")]["Avg"] == 15.5


@pytest.mark.parametrize("key", sorted(paper_table1()))
def test_each_published_average_is_the_mean_of_its_organs(key):
    row = paper_table1()[key]
    mean = sum(row[c] for c in ORGAN_COLUMNS) / len(ORGAN_COLUMNS)
    assert abs(mean - row["Avg"]) <= 0.1  # 13 values and the average each rounded to 0.1
