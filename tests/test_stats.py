"""The report's statistics against values worked out by hand on small tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.stats import bootstrap, discriminative_power, holm, pairwise_tests, per_case_scores


def results(values: dict[str, dict[int, list[float]]], fraction: str = "25pct") -> pd.DataFrame:
    """Long results with one organ per case, so a case's organ-mean is the value given (as a fraction)."""
    rows = [
        {"method": method, "data": fraction, "repeat": repeat, "case": f"{i:04d}", "organ": "liver", "dice": v, "nsd": v, "hd95": 1.0}
        for method, draws in values.items()
        for repeat, cases in draws.items()
        for i, v in enumerate(cases)
    ]
    return pd.DataFrame(rows)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> non-decreasing: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.5, math.nan, 0.01])  # NaN is neither adjusted nor counted: m = 2
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])  # capped at 1 only when needed, order kept
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_every_pair_is_tested_on_the_same_cases_and_adjusted_together():
    table = per_case_scores(
        results(
            {
                "a": {0: [0.9, 0.8, 0.85, 0.95, 0.7, 0.75], 1: [0.9, 0.8, 0.85, 0.95, 0.7, 0.75]},
                "b": {0: [0.5, 0.4, 0.45, 0.55, 0.3, 0.35], 1: [0.5, 0.4, 0.45, 0.55, 0.3, 0.35]},
                "c": {0: [0.5, 0.4, 0.45, 0.55, 0.3, 0.35]},  # one draw only: 6 pairs with a and b
            }
        )
    )
    tests = {(t["first"], t["second"]): t for t in pairwise_tests(table, "25pct", ["a", "b", "c"])}
    assert set(tests) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert tests[("a", "b")]["pairs"] == 12 and tests[("a", "c")]["pairs"] == 6
    assert tests[("a", "b")]["mean_diff"] == pytest.approx(40.0)
    # a beats c on all 6 pairs: exact two-sided p = 2 / 2**6; b and c tie everywhere: p = 1
    assert tests[("a", "c")]["p_value"] == pytest.approx(2 / 2**6) and tests[("b", "c")]["p_value"] == 1.0
    raw = [tests[k]["p_value"] for k in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [tests[k]["p_holm"] for k in (("a", "b"), ("a", "c"), ("b", "c"))] == pytest.approx(holm(raw))
    assert tests[("a", "c")]["p_holm"] == pytest.approx(2 * 2 / 2**6) and tests[("a", "c")]["significant"] is False
    assert tests[("a", "b")]["significant"] is True  # 12 pairs all in a's favour: 2 / 2**12 before adjustment


def test_bootstrap_interval_and_ranks_by_hand():
    """a scores 0 and 100 on the two cases of one draw, b 50 on both. A resample of two cases gives a
    the mean 0, 50 or 100 with probabilities 1/4, 1/2, 1/4: a's interval is 0 to 100, and a ranks
    first (alone or tied) in 3/4 of resamples, as does b; b's interval has no width."""
    table = per_case_scores(results({"a": {0: [0.0, 1.0]}, "b": {0: [0.5, 0.5]}}))
    a, b = bootstrap(table, "25pct", ["a", "b"], resamples=4000, seed=1)
    assert (a.method, a.mean, a.low, a.high) == ("a", 50.0, 0.0, 100.0)
    assert (b.low, b.high) == (50.0, 50.0)
    assert a.rank_shares[0] == pytest.approx(0.75, abs=0.03) and a.rank_shares[1] == pytest.approx(0.25, abs=0.03)
    assert b.rank_shares[0] == pytest.approx(0.75, abs=0.03)
    again = bootstrap(table, "25pct", ["a", "b"], resamples=4000, seed=1)
    assert again[0].rank_shares == a.rank_shares  # seeded: a rerun of the report gives the same numbers


def test_bootstrap_resamples_within_draws():
    """Every case of draw 0 scores 20 and every case of draw 1 scores 80: resampling within draws
    keeps the mean at 50 exactly; pooling the draws would not."""
    table = per_case_scores(results({"a": {0: [0.2] * 6, 1: [0.8] * 6}, "b": {0: [0.1] * 6, 1: [0.1] * 6}}))
    a, b = bootstrap(table, "25pct", ["a", "b"], resamples=500)
    assert (a.low, a.mean, a.high) == pytest.approx((50.0, 50.0, 50.0))
    assert a.rank_shares == [1.0, 0.0] and b.rank_shares == [0.0, 1.0]


def test_discriminative_power_by_hand():
    # Draw means a: 60, 70; b: 80, 84. Method means 65, 82 -> SD 17 / sqrt 2; draw SDs 10 / sqrt 2 and 4 / sqrt 2.
    table = per_case_scores(results({"a": {0: [0.6, 0.6], 1: [0.7, 0.7]}, "b": {0: [0.8, 0.8], 1: [0.84, 0.84]}}))
    power = discriminative_power(table, "25pct", ["a", "b"])
    assert power["between_methods_sd"] == pytest.approx(17 / math.sqrt(2))
    assert power["between_draws_sd"] == pytest.approx(7 / math.sqrt(2))
    assert power["ratio"] == pytest.approx(17 / 7) and "exceed" in power["verdict"]
    close = per_case_scores(results({"a": {0: [0.6], 1: [0.8]}, "b": {0: [0.62], 1: [0.8]}}))
    assert "within the variation between training draws" in discriminative_power(close, "25pct", ["a", "b"])["verdict"]
    assert discriminative_power(per_case_scores(results({"a": {0: [0.6]}, "b": {0: [0.7]}})), "25pct", ["a", "b"]) is None
