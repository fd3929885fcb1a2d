"""When is a difference between methods real? Paired tests with Holm's correction, bootstrap
confidence intervals and rank distributions, and the discriminative power of the comparison.

Every statistic works on per-case scores: one value per (draw, test case) and method, the case's
Dice averaged over organs (NaN organs skipped), in percent. A pair is the same test case scored by
models trained on the same draw. As Touchstone (Bassi et al., NeurIPS 2024) does, every pair of
methods within a fraction gets a two-sided Wilcoxon signed-rank test and the p-values of a fraction
are adjusted together with Holm's step-down method. nnU-Net Revisited (Isensee et al., MICCAI 2024)
compares the spread between methods with the spread between training draws; below a ratio of 1 the
ranking says little. Everything is a pure function of the results table (the bootstrap is seeded),
so a rerun of ``bench report`` gives the same numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.results import metric_scale

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240


def per_case_scores(results: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Wide table: index (data, repeat, case), one column per method, the case's organ-mean in % (mm for HD95)."""
    if results.empty:
        return pd.DataFrame()
    df = results.copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    means = df.groupby(["data", "repeat", "case", "method"])[metric].mean() * metric_scale(metric)
    return means.unstack("method")


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


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired values; 1 when every pair ties, NaN without pairs."""
    from scipy.stats import wilcoxon

    if len(a) == 0:
        return math.nan
    if np.all(a - b == 0):
        return 1.0
    return float(wilcoxon(a, b).pvalue)


def pairwise_tests(scores: pd.DataFrame, fraction: str, methods: list[str]) -> list[dict]:
    """Every pair of ``methods`` at one fraction: pairs, mean difference (first - second), raw and
    Holm-adjusted p (adjusted over the fraction's pairs)."""
    if scores.empty or fraction not in scores.index.get_level_values("data"):
        return []
    table = scores.loc[fraction]
    tests = []
    for first, second in itertools.combinations([m for m in methods if m in table.columns], 2):
        joined = table[[first, second]].dropna()
        a, b = joined[first].to_numpy(), joined[second].to_numpy()
        tests.append(
            {
                "data": fraction,
                "first": first,
                "second": second,
                "pairs": len(joined),
                "mean_diff": float(np.mean(a - b)) if len(a) else math.nan,
                "p_value": wilcoxon_p(a, b),
            }
        )
    for test, adjusted in zip(tests, holm([t["p_value"] for t in tests]), strict=True):
        test["p_holm"] = adjusted
        test["significant"] = adjusted == adjusted and adjusted < ALPHA
    return tests


@dataclass
class Bootstrap:
    """A method's mean over (draw, case) pairs, its 95% percentile interval and the share of
    resamples in which it ranks 1st, 2nd, ... among the methods compared."""

    method: str
    mean: float
    low: float
    high: float
    rank_shares: list[float]


def bootstrap(
    scores: pd.DataFrame, fraction: str, methods: list[str], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[Bootstrap]:
    """Resample test cases with replacement within each draw (the same cases for every method, so
    ranks compare like with like), on the (draw, case) pairs every method has; higher is better."""
    if scores.empty or fraction not in scores.index.get_level_values("data"):
        return []
    present = [m for m in methods if m in scores.columns]
    table = scores.loc[fraction, present].dropna()
    if table.empty:
        return []
    rng = np.random.default_rng(seed)
    values = table.to_numpy()  # (pairs, methods)
    draws = table.index.get_level_values("repeat").to_numpy()
    groups = [np.flatnonzero(draws == d) for d in np.unique(draws)]
    means = np.empty((resamples, len(present)))
    for r in range(resamples):
        picked = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        means[r] = values[picked].mean(axis=0)
    # Rank index 0 = highest mean: the number of methods strictly better, so ties share the better rank.
    ranks = (means[:, None, :] > means[:, :, None]).sum(axis=2)
    out = []
    for j, method in enumerate(present):
        shares = [float(np.mean(ranks[:, j] == k)) for k in range(len(present))]
        low, high = np.percentile(means[:, j], [2.5, 97.5])
        out.append(Bootstrap(method, float(values[:, j].mean()), float(low), float(high), shares))
    return out


def discriminative_power(scores: pd.DataFrame, fraction: str, methods: list[str]) -> dict | None:
    """SD of the method means against the mean SD of each method across draws (both over draw means);
    None without two methods that have two draws each."""
    if scores.empty or fraction not in scores.index.get_level_values("data"):
        return None
    draw_means = scores.loc[fraction].groupby(level="repeat").mean()
    usable = [m for m in methods if m in draw_means.columns and draw_means[m].notna().sum() >= 2]
    if len(usable) < 2:
        return None
    between = float(draw_means[usable].mean().std(ddof=1))
    within = float(draw_means[usable].std(ddof=1).mean())
    ratio = between / within if within > 0 else math.inf
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
    }
