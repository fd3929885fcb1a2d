"""Paired comparisons of methods on the same test cases."""

from __future__ import annotations

import math

import pandas as pd

from bench.config import FRACTIONS


def paired_tests(results: pd.DataFrame, table: pd.DataFrame) -> list[dict]:
    """Each method against the best (highest Avg) of its fraction: Wilcoxon signed-rank over (draw, case) pairs.

    A pair is the same test case scored by models trained on the same draw, each value the case's
    Dice averaged over organs (NaN organs skipped). Two-sided; pairs missing from either method are left out.
    """
    from scipy.stats import wilcoxon

    if results.empty:
        return []
    df = results.copy()
    df["dice"] = pd.to_numeric(df["dice"], errors="coerce")
    per_case = df.groupby(["data", "method", "repeat", "case"])["dice"].mean() * 100
    tests = []
    for fraction in FRACTIONS:
        ranked = table[(table["data"] == fraction) & table["Avg_mean"].notna()].sort_values("Avg_mean", ascending=False)
        if len(ranked) < 2:
            continue
        best = ranked.iloc[0]["method"]
        reference = per_case.loc[(fraction, best)]
        for method in ranked["method"].iloc[1:]:
            joined = pd.concat([per_case.loc[(fraction, method)].rename("other"), reference.rename("best")], axis=1, join="inner").dropna()
            diff = joined["other"] - joined["best"]
            if len(joined) == 0:
                p_value = math.nan
            elif (diff == 0).all():
                p_value = 1.0
            else:
                p_value = float(wilcoxon(joined["other"], joined["best"]).pvalue)
            tests.append(
                {
                    "data": fraction,
                    "method": method,
                    "best": best,
                    "pairs": len(joined),
                    "mean_diff": float(diff.mean()) if len(diff) else math.nan,
                    "median_diff": float(diff.median()) if len(diff) else math.nan,
                    "p_value": p_value,
                }
            )
    return tests
