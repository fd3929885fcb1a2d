"""Issue 24's simulation of the paper's design, run against whatever ``bench.reporting.stats`` is installed
(``PYTHONPATH=. python docs/experiments/stats_simulation.py`` in the repository root; the figures are in
docs/notebook.md). The simulated design is the test suite's (``tests.test_stats.simulated_scores``).

Two methods, every draw scored on the same test cases. Score = 70 + the case's difficulty (SD 10,
shared by both methods and all draws) + a case-by-method effect (SD 1 or 2, shared by the draws)
+ noise (SD 1 per draw, case and method); method a is ``difference`` points better. Prints the
rejection rate of ``pairwise_tests`` under the null, its power for a 3-point difference, and the
width of ``bootstrap``'s interval against a cluster bootstrap that resamples case ids once for
every draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.reporting.stats import bootstrap, pairwise_tests
from tests.test_stats import simulated_scores as scores


def cluster_interval_width(table: pd.DataFrame, rng, resamples: int) -> float:
    long = table["a"].reset_index()
    ids = long["case"].unique()
    rows = {c: long[long["case"] == c]["a"].to_numpy() for c in ids}
    means = [np.concatenate([rows[c] for c in rng.choice(ids, size=len(ids))]).mean() for _ in range(resamples)]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(high - low)


def main() -> None:
    rng = np.random.default_rng(0)
    for sd in (1.0, 2.0):
        rejected = [pairwise_tests(scores(rng, 6, case_method_sd=sd), "25pct", ["a", "b"])[0]["p_value"] < 0.05 for _ in range(400)]
        print(f"null, 5 draws x 6 cases, case-by-method SD {sd:g}: rejects {np.mean(rejected):.1%} of 400 at p < 0.05")
    detected = [
        pairwise_tests(scores(rng, 30, case_method_sd=5.0, difference=3.0), "25pct", ["a", "b"])[0]["p_value"] < 0.05 for _ in range(400)
    ]
    print(f"a 3-point difference, 5 draws x 30 cases, case-by-method SD 5: detected in {np.mean(detected):.1%} of 400")
    ours, cluster = [], []
    for _ in range(20):
        table = scores(rng, 6, case_method_sd=1.5)
        a = bootstrap(table, "25pct", ["a", "b"], resamples=1000)[0]
        ours.append(a.high - a.low)
        cluster.append(cluster_interval_width(table, rng, 300))
    width = f"bench.reporting.stats {np.mean(ours):.2f} pts wide, cluster bootstrap {np.mean(cluster):.2f}"
    print(f"95% interval of a's mean, 5 draws x 6 cases: {width}")


if __name__ == "__main__":
    main()
