"""When is a difference between methods real? Paired tests with Holm's correction, cluster-bootstrap
intervals and rank distributions, what the test set can show at all, and the discriminative power.

The unit is the test case. Every draw of a fraction is scored on the same test cases (0035-0040 in
the paper's protocol), so the five draws' scores of one case are not five independent observations:
a case on which one method happens to be better would count five times, and a test that pooled
(draw, case) pairs rejected a true null in 23-34 % of simulated comparisons instead of 5 %. So:

- A method's score on a case is the case's Dice averaged over organs (NaN organs skipped, in %),
  then averaged over the draws being compared (``case_means``): one value per distinct test case.
- Two methods are compared on the cases and draws both have, with a two-sided Wilcoxon
  signed-rank test on the per-case differences, as Touchstone (Bassi et al., NeurIPS 2024) does, and
  the p-values of a fraction are adjusted together with Holm's step-down method. The test is
  chosen explicitly, never by scipy's version-dependent ``method="auto"``: zero differences are
  dropped (Wilcoxon's convention); up to ``EXACT_MAX_CASES`` cases the exact null distribution
  (scipy's, or where absolute differences tie, the same count of sign patterns over mid-ranks,
  which scipy offers only by enumerating them), beyond that the normal approximation with
  tie-corrected variance and no continuity correction; each test records which it got. The normal
  approximation is not used for ties at small n: on six equal differences it gives p = 0.014,
  below the 2/64 that six cases can show.
- With n cases the exact test cannot give a two-sided p below 2 / 2^n (0.031 for six), and after
  Holm over m pairs no adjusted p falls below m times that: ``detection_limit`` says so in a
  sentence instead of leaving an empty heatmap to read as "no differences".
- The bootstrap is a cluster bootstrap: each resample draws test-case ids with replacement once
  and uses them for every draw and every method; intervals and rank shares come from the same
  resamples.
- nnU-Net Revisited (Isensee et al., MICCAI 2024) compares the spread between methods with the
  spread between training draws; below a ratio of 1 the ranking says little. With one fixed test
  set that ratio sees the variation due to the training cases only.

Everything is a pure function of the results table (the bootstrap is seeded), so a rerun of
``bench report`` gives the same numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.runs.results import metric_scale

ALPHA = 0.05
# What computes these numbers; the report names their versions (p-values may differ across scipy releases).
STATISTICS_PACKAGES = ("scipy", "pandas", "numpy")
# Up to this many cases the signed-rank test uses its exact null distribution (2^n sign patterns).
EXACT_MAX_CASES = 50
# Differences are rounded to this many decimals (of a percentage point) before ranking, so that two
# methods whose scores differ only by floating-point noise count as a tie, not as a signed rank.
DIFFERENCE_DECIMALS = 9
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240
EXACT = "exact"
EXACT_TIES = "exact, mid-ranks for tied differences"
NORMAL_LARGE = f"normal approximation (more than {EXACT_MAX_CASES} cases)"


def per_case_scores(results: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Wide table: index (data, repeat, case), one column per method, the case's organ-mean in % (mm for HD95)."""
    if results.empty:
        return pd.DataFrame()
    df = results.copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    means = df.groupby(["data", "repeat", "case", "method"])[metric].mean() * metric_scale(metric)
    return means.unstack("method")


def case_means(scores: pd.DataFrame, fraction: str, methods: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """Per distinct test case (index), each of ``methods`` (columns) averaged over the draws of
    ``fraction`` in which every one of them scored that case; and those draws. Cases that some
    method never scored are left out, so every method is measured on the same cases and draws."""
    if scores.empty or fraction not in scores.index.get_level_values("data") or any(m not in scores.columns for m in methods):
        return pd.DataFrame(columns=methods), []
    shared = scores.loc[fraction, list(methods)].dropna()
    draws = sorted(int(d) for d in shared.index.get_level_values("repeat").unique())
    return shared.groupby(level="case").mean(), draws


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error): the k-th smallest of m p-values is multiplied
    by m - k + 1, made non-decreasing in that order and capped at 1; NaN stays NaN and is not counted."""
    finite = [(p, i) for i, p in enumerate(p_values) if p == p]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, p * (len(finite) - k)))
        adjusted[i] = running
    return adjusted


def signed_rank_test(differences: np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p of paired differences and which null distribution gave it
    (``EXACT``, ``EXACT_TIES`` or ``NORMAL_LARGE``, see the module docstring); NaN without
    differences, 1 when every difference is zero."""
    from scipy.stats import wilcoxon

    d = np.round(np.asarray(differences, dtype=float), DIFFERENCE_DECIMALS)
    if d.size == 0:
        return math.nan, ""
    d = d[d != 0]
    if d.size == 0:
        return 1.0, "every case ties"
    if d.size > EXACT_MAX_CASES:
        return float(wilcoxon(d, zero_method="wilcox", correction=False, method="approx").pvalue), NORMAL_LARGE
    if np.unique(np.abs(d)).size < d.size:
        return _exact_p_with_ties(d), EXACT_TIES
    return float(wilcoxon(d, zero_method="wilcox", method="exact").pvalue), EXACT


def _exact_p_with_ties(d: np.ndarray) -> float:
    """Two-sided p of the signed-rank sum of the positive differences among all 2^n equally likely
    sign patterns, ranks being the mid-ranks of |d|; counted by adding one rank at a time."""
    from scipy.stats import rankdata

    doubled = np.rint(2 * rankdata(np.abs(d))).astype(int)  # mid-ranks end in .5: doubled, they are integers
    counts = np.zeros(int(doubled.sum()) + 1)  # counts[s]: sign patterns whose doubled sum is s (exact below 2^53)
    counts[0] = 1.0
    for rank in doubled:
        shifted = np.zeros_like(counts)
        shifted[rank:] = counts[:-rank]
        counts += shifted
    observed = int(doubled[d > 0].sum())
    upper, lower = counts[observed:].sum(), counts[: observed + 1].sum()
    return float(min(1.0, 2 * min(upper, lower) / counts.sum()))


def smallest_p(cases: int) -> float:
    """The smallest two-sided p the signed-rank test can give with ``cases`` paired cases: every
    difference of one sign, 2 / 2^n from the exact distribution, ties or not; beyond
    ``EXACT_MAX_CASES``, the normal approximation's for n equal differences (z = sqrt(n), its most
    extreme); 1 without cases."""
    if cases < 1:
        return 1.0
    if cases <= EXACT_MAX_CASES:
        return min(1.0, 2.0 / 2**cases)
    from scipy.stats import norm

    return float(2 * norm.sf(math.sqrt(cases)))


def detection_limit(cases: int, methods: int, alpha: float = ALPHA) -> str | None:
    """The sentence to print when no pair of ``methods`` can differ at ``alpha`` after Holm's
    correction over all their pairs, whatever the scores (the smallest attainable p times the number
    of pairs is at least alpha); None when a difference can be shown."""
    pairs = methods * (methods - 1) // 2
    if pairs < 1:
        return None
    floor = smallest_p(cases)
    if pairs * floor < alpha:
        return None
    correction = f" after Holm's correction over {pairs} pairs" if pairs > 1 else ""
    arithmetic = f"{floor:.3g} x {pairs} pairs = {pairs * floor:.3g}" if pairs > 1 else f"{floor:.3g}"
    return (
        f"{cases} test case{'s' if cases != 1 else ''} cannot show a difference between {methods} methods at alpha {alpha:g}"
        f"{correction} (smallest attainable p: {arithmetic}); use more test cases or cross-validation."
    )


def limit_of_tests(tests: list[dict], methods: int, alpha: float = ALPHA) -> str | None:
    """``detection_limit`` of a fraction's pairwise tests: on the most cases any pair shares."""
    return detection_limit(max((t["cases"] for t in tests), default=0), methods, alpha)


def pairwise_tests(scores: pd.DataFrame, fraction: str, methods: list[str]) -> list[dict]:
    """Every pair of ``methods`` at one fraction, on their shared cases and draws (``case_means``):
    distinct test cases, draws averaged, mean per-case difference (first - second), raw p and the
    null distribution used, and Holm-adjusted p (adjusted over the fraction's pairs)."""
    if scores.empty or fraction not in scores.index.get_level_values("data"):
        return []
    tests = []
    for first, second in itertools.combinations([m for m in methods if m in scores.columns], 2):
        means, draws = case_means(scores, fraction, [first, second])
        differences = (means[first] - means[second]).to_numpy(dtype=float)
        p_value, how = signed_rank_test(differences)
        tests.append(
            {
                "data": fraction,
                "first": first,
                "second": second,
                "cases": len(means),
                "draws": len(draws),
                "mean_diff": float(differences.mean()) if differences.size else math.nan,
                "p_value": p_value,
                "test": how,
            }
        )
    for test, adjusted in zip(tests, holm([t["p_value"] for t in tests]), strict=True):
        test["p_holm"] = adjusted
        test["significant"] = adjusted == adjusted and adjusted < ALPHA
    return tests


@dataclass
class Bootstrap:
    """A method's mean over its test cases, its 95% percentile interval and the share of resamples in
    which it ranks 1st, 2nd, ... among the methods compared; on ``cases`` cases, ``draws`` draws each."""

    method: str
    mean: float
    low: float
    high: float
    rank_shares: list[float]
    cases: int
    draws: int


def bootstrap(
    scores: pd.DataFrame, fraction: str, methods: list[str], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[Bootstrap]:
    """Cluster bootstrap over test cases: each resample draws case ids with replacement once, for
    every draw and every method (so ranks compare like with like); on the cases and draws every
    method has; higher is better."""
    present = [m for m in methods if m in scores.columns]
    means, draws = case_means(scores, fraction, present)
    if means.empty:
        return []
    values = means.to_numpy(dtype=float)  # (cases, methods), each already the mean over the draws
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(values), size=(resamples, len(values)))
    resampled = values[picked].mean(axis=1)  # (resamples, methods)
    # Rank index 0 = highest mean: the number of methods strictly better, so ties share the better rank.
    ranks = (resampled[:, None, :] > resampled[:, :, None]).sum(axis=2)
    out = []
    for j, method in enumerate(present):
        shares = [float(np.mean(ranks[:, j] == k)) for k in range(len(present))]
        low, high = np.percentile(resampled[:, j], [2.5, 97.5])
        out.append(Bootstrap(method, float(values[:, j].mean()), float(low), float(high), shares, len(values), len(draws)))
    return out


def discriminative_power(scores: pd.DataFrame, fraction: str, methods: list[str]) -> dict | None:
    """SD of the method means against the mean SD of each method across draws (both over draw means);
    None without two methods that have two draws each. ``fixed_test_set``: every draw was scored on
    the same test cases, so the draws vary the training cases only."""
    if scores.empty or fraction not in scores.index.get_level_values("data"):
        return None
    table = scores.loc[fraction]
    draw_means = table.groupby(level="repeat").mean()
    usable = [m for m in methods if m in draw_means.columns and draw_means[m].notna().sum() >= 2]
    if len(usable) < 2:
        return None
    between = float(draw_means[usable].mean().std(ddof=1))
    within = float(draw_means[usable].std(ddof=1).mean())
    ratio = between / within if within > 0 else math.inf
    scored = table[usable].dropna(how="all")
    case_sets = {frozenset(group.index.get_level_values("case")) for _, group in scored.groupby(level="repeat")}
    return {
        "data": fraction,
        "methods": len(usable),
        "between_methods_sd": between,
        "between_draws_sd": within,
        "ratio": ratio,
        "verdict": (
            "differences between methods are within the variation between training draws"
            if ratio < 1
            else "differences between methods exceed the variation between training draws"
        ),
        "fixed_test_set": len(case_sets) == 1,
        "scope": (
            "one fixed test set: the draws change only the training cases, so this is the spread across training draws, "
            "not across data splits (nnU-Net Revisited's folds change the test cases too)"
            if len(case_sets) == 1
            else "test cases that change with the draws: this is the spread across data splits, as with cross-validation folds"
        ),
    }
