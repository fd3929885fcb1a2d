"""The report's statistics: values worked out by hand on small tables, the exact test against an
enumeration of every sign pattern, and seeded simulations of the paper's design (the same test
cases in every draw) for the error rate, the power and the bootstrap's width."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from bench.reporting.stats import (
    EXACT,
    EXACT_TIES,
    NORMAL_LARGE,
    bootstrap,
    detection_limit,
    discriminative_power,
    holm,
    pairwise_tests,
    per_case_scores,
    signed_rank_test,
    smallest_p,
)
from bench.runs.results import penalty_summary


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


def enumerated_p(differences: list[float]) -> float:
    """Two-sided exact signed-rank p by listing all 2^n sign patterns of the (mid-)ranks."""
    from scipy.stats import rankdata

    ranks = rankdata(np.abs(differences))
    observed = ranks[np.asarray(differences) > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs, strict=True) if s) for signs in itertools.product([0, 1], repeat=len(ranks))]
    upper, lower = np.mean([t >= observed for t in sums]), np.mean([t <= observed for t in sums])
    return min(1.0, 2 * min(upper, lower))


def test_exact_signed_rank_by_hand_and_against_every_sign_pattern():
    # All six cases favour one method: only 2 of the 64 sign patterns are as extreme -> 2/64.
    assert signed_rank_test(np.array([1.0, 2, 3, 4, 5, 6])) == (pytest.approx(2 / 64), EXACT)
    # The smallest difference against: W- = 1; patterns with W- <= 1 are {} and {1}: 2 x 2/64.
    assert signed_rank_test(np.array([-1.0, 2, 3, 4, 5, 6]))[0] == pytest.approx(4 / 64)
    # Rank 2 against: W- = 2; {}, {1}, {2}: 2 x 3/64.
    assert signed_rank_test(np.array([1.0, -2, 3, 4, 5, 6]))[0] == pytest.approx(6 / 64)
    rng = np.random.default_rng(3)
    for _ in range(5):
        d = rng.normal(0.5, 1, 9).tolist()
        assert signed_rank_test(np.array(d)) == (pytest.approx(enumerated_p(d)), EXACT)


def test_zeros_are_dropped_ties_counted_exactly_and_large_samples_approximated():
    assert signed_rank_test(np.array([0.0, 1, 2, 3])) == (pytest.approx(2 / 8), EXACT)  # n = 3 left
    assert signed_rank_test(np.array([1e-12, 1, 2, 3]))[0] == pytest.approx(2 / 8)  # float noise is a zero
    assert signed_rank_test(np.zeros(6))[0] == 1.0 and math.isnan(signed_rank_test(np.array([]))[0])
    # Six equal differences: still 2 of 64 sign patterns (the normal approximation would say 0.014).
    assert signed_rank_test(np.full(6, 2.0)) == (pytest.approx(2 / 64), EXACT_TIES)
    # Mid-ranks 1.5, 1.5, 3..6 with the first negative: W+ = 19.5; patterns with W+ >= 19.5 are
    # all-positive (21) and one of the two 1.5s negative (19.5, twice): 2 x 3/64.
    assert signed_rank_test(np.array([-1.0, 1, 2, 3, 4, 5])) == (pytest.approx(6 / 64), EXACT_TIES)
    rng = np.random.default_rng(5)
    for _ in range(5):
        d = rng.integers(-3, 6, 10).astype(float)  # many ties (zeros dropped first)
        d = d[d != 0].tolist()
        assert signed_rank_test(np.array(d)) == (pytest.approx(enumerated_p(d)), EXACT_TIES)
    p, how = signed_rank_test(np.arange(1.0, 52))
    # Normal approximation by hand: W+ = 51 x 52 / 2, mean half of it, variance n(n+1)(2n+1)/24.
    z = (51 * 52 / 4) / math.sqrt(51 * 52 * 103 / 24)
    assert how == NORMAL_LARGE and p == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_the_smallest_attainable_p_and_the_sentence_when_no_pair_can_reach_alpha():
    assert smallest_p(6) == pytest.approx(0.03125) and smallest_p(1) == 1.0 and smallest_p(0) == 1.0
    assert smallest_p(6) == pytest.approx(signed_rank_test(np.arange(1.0, 7))[0])  # attained when all agree
    assert smallest_p(60) == pytest.approx(signed_rank_test(np.ones(60))[0])  # beyond 50: equal differences
    assert smallest_p(60) < signed_rank_test(np.arange(1.0, 61))[0]
    assert detection_limit(6, 2) is None  # one pair: 0.031 < 0.05
    three = detection_limit(6, 3)  # Holm over 3 pairs: 3 x 0.031 = 0.094
    assert three.startswith("6 test cases cannot show a difference between 3 methods at alpha 0.05 after Holm's correction")
    assert "0.0312 x 3 pairs = 0.0938" in three and three.endswith("use more test cases or cross-validation.")
    assert "55 pairs" in detection_limit(6, 11)
    assert "Holm" not in detection_limit(5, 2)  # 2/32 = 0.0625: one pair, nothing to correct
    assert detection_limit(30, 11) is None and detection_limit(6, 1) is None


def test_the_test_case_is_the_unit_draws_are_averaged_per_case():
    a_draw = [0.9, 0.8, 0.85, 0.95, 0.7, 0.75]
    b_draw = [0.5] * 6
    table = per_case_scores(results({"a": {0: a_draw, 1: a_draw}, "b": {0: b_draw, 1: b_draw}, "c": {0: b_draw}}))
    tests = {(t["first"], t["second"]): t for t in pairwise_tests(table, "25pct", ["a", "b", "c"])}
    assert set(tests) == {("a", "b"), ("a", "c"), ("b", "c")}
    # Two draws of six cases are six cases, not twelve pairs: a beats b on all six, p = 2/2^6, not 2/2^12.
    assert (tests[("a", "b")]["cases"], tests[("a", "b")]["draws"]) == (6, 2)
    assert tests[("a", "b")]["p_value"] == pytest.approx(2 / 2**6) and tests[("a", "b")]["test"] == EXACT
    assert (tests[("a", "c")]["cases"], tests[("a", "c")]["draws"]) == (6, 1)  # c has draw 0 only
    assert tests[("a", "b")]["mean_diff"] == pytest.approx((40 + 30 + 35 + 45 + 20 + 25) / 6)
    assert tests[("b", "c")]["p_value"] == 1.0  # b and c tie on every case
    raw = [tests[k]["p_value"] for k in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [tests[k]["p_holm"] for k in (("a", "b"), ("a", "c"), ("b", "c"))] == pytest.approx(holm(raw))
    assert not any(t["significant"] for t in tests.values())  # 3 x 2/64 > 0.05: six cases cannot show it


def test_a_case_better_in_one_draw_and_worse_in_another_counts_once_by_its_mean():
    # Case 0: a is 30 points better in draw 0 and 10 worse in draw 1 -> +10 on average.
    table = per_case_scores(results({"a": {0: [0.8, 0.5, 0.5], 1: [0.4, 0.5, 0.5]}, "b": {0: [0.5, 0.5, 0.4], 1: [0.5, 0.5, 0.4]}}))
    (test,) = pairwise_tests(table, "25pct", ["a", "b"])
    assert test["cases"] == 3 and test["mean_diff"] == pytest.approx((10 + 0 + 10) / 3)
    assert test["p_value"] == pytest.approx(signed_rank_test(np.array([10.0, 10.0]))[0])  # the tie at 0 dropped


def simulated_scores(rng, cases: int, draws: int = 5, case_method_sd: float = 2.0, difference: float = 0.0) -> pd.DataFrame:
    """The paper's design: every draw scored on the same cases. Score = 70 + the case's difficulty
    (SD 10, shared by methods and draws) + a case-by-method effect (SD ``case_method_sd``, shared by
    draws) + noise (SD 1); method a is ``difference`` points better."""
    difficulty = rng.normal(0, 10, cases)
    effect = rng.normal(0, case_method_sd, (2, cases))
    index = pd.MultiIndex.from_product([["25pct"], range(draws), [f"{c:04d}" for c in range(cases)]], names=["data", "repeat", "case"])
    a = 70 + difference + np.tile(difficulty + effect[0], draws) + rng.normal(0, 1, draws * cases)
    b = 70 + np.tile(difficulty + effect[1], draws) + rng.normal(0, 1, draws * cases)
    return pd.DataFrame({"a": a, "b": b}, index=index)


@pytest.mark.parametrize("cases", [6, 30])
def test_under_a_null_with_case_effects_the_error_rate_stays_near_alpha(cases):
    """Pooling (draw, case) pairs rejected this null in 23-34 % of comparisons (issue 24)."""
    rng = np.random.default_rng(cases)
    rejected = [pairwise_tests(simulated_scores(rng, cases), "25pct", ["a", "b"])[0]["significant"] for _ in range(400)]
    assert np.mean(rejected) <= 0.08


def test_a_true_three_point_difference_over_30_cases_is_detected():
    rng = np.random.default_rng(7)
    detected = [pairwise_tests(simulated_scores(rng, 30, difference=3.0), "25pct", ["a", "b"])[0]["significant"] for _ in range(400)]
    assert np.mean(detected) >= 0.8


def reference_cluster_interval(scores: pd.DataFrame, method: str, rng, resamples: int) -> tuple[float, float]:
    """Resample case ids, then take every draw's rows of those ids from the long table."""
    long = scores[method].reset_index()
    ids = long["case"].unique()
    rows = {c: long[long["case"] == c][method].to_numpy() for c in ids}
    means = [np.concatenate([rows[c] for c in rng.choice(ids, size=len(ids))]).mean() for _ in range(resamples)]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def test_the_bootstrap_resamples_test_cases_once_for_every_draw():
    rng = np.random.default_rng(11)
    ours, reference = [], []
    for _ in range(10):
        scores = simulated_scores(rng, 6)
        a = bootstrap(scores, "25pct", ["a", "b"], resamples=2000)[0]
        low, high = reference_cluster_interval(scores, "a", rng, 2000)
        ours.append(a.high - a.low)
        reference.append(high - low)
        assert (a.cases, a.draws) == (6, 5)
    # Within-draw resampling gave intervals half as wide as this reference (issue 24).
    assert np.mean(ours) == pytest.approx(np.mean(reference), rel=0.2)


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


def test_the_same_case_ids_serve_every_draw():
    """Case 0 scores 0 and case 1 scores 100 in both draws. Resampling within each draw would mix a
    draw's case 0 with the other draw's case 1 (a mean of 50 in half the resamples); one set of ids
    for both draws gives the mean 0, 50 or 100 with probabilities 1/4, 1/2, 1/4, as one draw does."""
    table = per_case_scores(results({"a": {0: [0.0, 1.0], 1: [0.0, 1.0]}, "b": {0: [0.5, 0.5], 1: [0.5, 0.5]}}))
    a, _ = bootstrap(table, "25pct", ["a", "b"], resamples=4000, seed=1)
    assert (a.low, a.high, a.cases, a.draws) == (0.0, 100.0, 2, 2)
    assert a.rank_shares[1] == pytest.approx(0.25, abs=0.03)


def test_discriminative_power_by_hand():
    # Draw means a: 60, 70; b: 80, 84. Method means 65, 82 -> SD 17 / sqrt 2; draw SDs 10 / sqrt 2 and 4 / sqrt 2.
    table = per_case_scores(results({"a": {0: [0.6, 0.6], 1: [0.7, 0.7]}, "b": {0: [0.8, 0.8], 1: [0.84, 0.84]}}))
    power = discriminative_power(table, "25pct", ["a", "b"])
    assert power["between_methods_sd"] == pytest.approx(17 / math.sqrt(2))
    assert power["between_draws_sd"] == pytest.approx(7 / math.sqrt(2))
    assert power["ratio"] == pytest.approx(17 / 7) and "exceed" in power["verdict"]
    assert power["fixed_test_set"] and "training draws, not across data splits" in power["scope"]
    close = per_case_scores(results({"a": {0: [0.6], 1: [0.8]}, "b": {0: [0.62], 1: [0.8]}}))
    assert "within the variation between training draws" in discriminative_power(close, "25pct", ["a", "b"])["verdict"]
    assert discriminative_power(per_case_scores(results({"a": {0: [0.6]}, "b": {0: [0.7]}})), "25pct", ["a", "b"]) is None


def test_discriminative_power_says_when_the_draws_change_the_test_cases():
    rows = results({"a": {0: [0.6, 0.6], 1: [0.7, 0.7]}, "b": {0: [0.8, 0.8], 1: [0.84, 0.84]}})
    rows.loc[rows["repeat"] == 1, "case"] = rows.loc[rows["repeat"] == 1, "case"].str.replace("000", "010")  # folds
    power = discriminative_power(per_case_scores(rows), "25pct", ["a", "b"])
    assert not power["fixed_test_set"] and "spread across data splits" in power["scope"]


def test_the_penalty_summary_counts_missed_and_spurious_organs_and_their_penalty():
    rows = pd.DataFrame(
        [
            # two draws of one case: the liver found (2 and 4 mm), the spleen missed in draw 1
            ("m", "25pct", 0, "0035", "liver", 0.9, 0.9, 2.0, 100, 90),
            ("m", "25pct", 1, "0035", "liver", 0.8, 0.8, 4.0, 100, 80),
            ("m", "25pct", 0, "0035", "spleen", 0.7, 0.7, 6.0, 50, 40),
            ("m", "25pct", 1, "0035", "spleen", 0.0, 0.0, 400.0, 50, 0),
            # the pancreas is absent but predicted in draw 0; absent from both in draw 1 (NaN)
            ("m", "25pct", 0, "0035", "pancreas", 0.0, 0.0, 400.0, 0, 7),
            ("m", "25pct", 1, "0035", "pancreas", math.nan, math.nan, math.nan, 0, 0),
        ],
        columns=["method", "data", "repeat", "case", "organ", "dice", "nsd", "hd95", "n_ref", "n_pred"],
    )
    (summary,) = penalty_summary(rows).to_dict("records")
    assert summary["median"] == pytest.approx(6.0)  # of 2, 4, 6, 400, 400
    assert (summary["missed"], summary["present"], summary["spurious"]) == (1, 4, 1)
    assert (summary["penalty_min"], summary["penalty_max"]) == (400.0, 400.0)
    unknown = penalty_summary(rows.assign(n_ref=math.nan)).iloc[0]
    assert math.isnan(unknown["missed"]) and unknown["median"] == pytest.approx(6.0)
