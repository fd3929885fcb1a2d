"""Make the built-in protocols committed in ``protocols/`` (``python -m splits.make_splits``; a test
checks that the committed files equal this output).

``tpmamba``: the TP-Mamba paper trains on 24 cases and tests on 0035-0040 (the MONAI dataset_0.json
split, also MA-SAM's test set). For 25 % and 12 % of the data it draws 6 and 3 training cases five
times at random from the 24 and reports the mean of the five runs, but it does not say which cases.
These draws fix that choice once: draw k of a fraction of n cases is ``random.Random(SEED + 1000 * k
+ n)`` sampling n of the sorted 24 ids (then sorted for reading), so each draw has its own stream and
adding draws never changes earlier ones.

``cv5``: nnU-Net's five folds over the 30 labelled cases, exactly as nnU-Net assigns them
(``nnunetv2.utilities.crossval_split.generate_crossval_split`` with its seed 12345 on the sorted
ids). Fold k is draw k of every fraction: 100 % trains on the fold's 24 training cases, 25 % and
12 % on 6 and 3 of them drawn as above from the fold's own 24; all are tested on the fold's six.

``synapse8``: TransUNet's Synapse split, the one SAMed reports on too: test on the 12 cases of its
``lists_Synapse/test_vol.txt``, train on the other 18, score the 8 organs of its tables. The
networks train on all 13 BTCV labels, as under the other protocols, so that a Synapse row differs
from a BTCV row only in its cases and the organs scored; TransUNet's own preprocessing keeps the 8
organs and merges the other five into background, a different task (say so beside such numbers).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240611  # fixed before any model was trained on these splits
NNUNET_SEED = 12345  # nnunetv2's fixed seed for its five folds
TEST_IDS = ("0035", "0036", "0037", "0038", "0039", "0040")
LABELLED_IDS = tuple(f"{i:04d}" for i in [*range(1, 11), *range(21, 41)])
DRAWS = 5
SUBSETS = {"25pct": 6, "12pct": 3}
DATASET = "BTCV (Multi-Atlas Labeling Beyond the Cranial Vault), 30 labelled cases"
PROTOCOLS_DIR = Path(__file__).with_name("protocols")


def draw_subset(pool: list[str], size: int, k: int, seed: int = SEED) -> list[str]:
    return sorted(random.Random(seed + k * 1000 + size).sample(sorted(pool), size))


def fixed_test_draws(ids, test, subsets: dict[str, int], draws: int = DRAWS, seed: int = SEED) -> dict:
    """A protocol's fractions with one test set: the first trains on every other case, each of
    ``subsets`` (fraction -> cases) on ``draws`` seeded draws of them."""
    pool, test = sorted(set(ids) - set(test)), sorted(test)
    fractions = {"100pct": [{"train": pool, "test": test}]}
    for name, size in subsets.items():
        fractions[name] = [{"train": draw_subset(pool, size, k, seed), "test": test} for k in range(draws)]
    return fractions


def fold_draws(ids, folds: int, subsets: dict[str, int], seed: int = SEED) -> dict:
    """A protocol's fractions over nnU-Net's ``folds`` folds of ``ids`` (its seed and order): fold k
    is draw k of every fraction, each of ``subsets`` drawn (seeded) from the fold's training cases."""
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    split = generate_crossval_split(sorted(ids), seed=NNUNET_SEED, n_splits=folds)
    split = [(sorted(map(str, f["train"])), sorted(map(str, f["val"]))) for f in split]
    fractions = {"100pct": [{"train": train, "test": test} for train, test in split]}
    for name, size in subsets.items():
        fractions[name] = [{"train": draw_subset(train, size, k, seed), "test": test} for k, (train, test) in enumerate(split)]
    return fractions


def built_in(name: str, description: str, fractions: dict, **facts) -> dict:
    """A built-in protocol file's content (``facts``: what else it says, before its draws)."""
    return {
        "name": name,
        "description": description,
        "dataset": DATASET,
        "made_by": "splits/make_splits.py",
        "seed": SEED,
        **facts,
        "fractions": fractions,
    }


def tpmamba() -> dict:
    description = "as in TP-Mamba (MICCAI 2024): test 0035-0040; 100 % of the other 24, five seeded draws of 25 % and 12 %"
    return built_in("tpmamba", description, fixed_test_draws(LABELLED_IDS, TEST_IDS, SUBSETS), compare_with_paper=True)


def cv5() -> dict:
    description = "nnU-Net's five folds over the 30 labelled cases, each fold tested on its own 6 held-out cases"
    return built_in("cv5", description, fold_draws(LABELLED_IDS, DRAWS, SUBSETS), fold_seed=NNUNET_SEED)


# TransUNet's lists/lists_Synapse (test_vol.txt); it trains on the other 18 labelled cases.
SYNAPSE_TEST_IDS = ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")
# The 8 organs Synapse scores, in TransUNet's table order (BTCV's names).
SYNAPSE_ORGANS = ("aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen", "stomach")


def synapse8() -> dict:
    description = (
        "TransUNet's Synapse split: 18 training, 12 test cases, scored on 8 organs; "
        "trained on all 13 labels (TransUNet merges the other 5 into background)"
    )
    fractions = {"100pct": [{"train": sorted(set(LABELLED_IDS) - set(SYNAPSE_TEST_IDS)), "test": list(SYNAPSE_TEST_IDS)}]}
    return built_in("synapse8", description, fractions, organs=list(SYNAPSE_ORGANS))


MAKERS = {"tpmamba": tpmamba, "cv5": cv5, "synapse8": synapse8}


def render(protocol: dict) -> str:
    return json.dumps(protocol, indent=2) + "\n"


if __name__ == "__main__":
    PROTOCOLS_DIR.mkdir(exist_ok=True)
    for name, make in MAKERS.items():
        path = PROTOCOLS_DIR / f"{name}.json"
        path.write_text(render(make()))
        print(f"wrote {path}")
