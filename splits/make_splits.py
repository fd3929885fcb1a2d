"""Make the fixed BTCV splits committed beside this file (``btcv.json``).

The TP-Mamba paper trains on 24 cases and tests on 0035-0040 (the MONAI dataset_0.json split, also
MA-SAM's test set). For 25% and 12% of the data it draws 6 and 3 training cases five times at random
from the 24 and reports the mean of the five runs, but it does not say which cases. These draws
fix that choice once: draw k of a fraction of n cases is ``random.Random(SEED + 1000 * k + n)``
sampling n of the sorted 24 ids (then sorted for reading), so each draw has its own stream and
adding draws never changes earlier ones. Regenerate with ``python -m splits.make_splits``; a test
checks that the committed file equals the output.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240611  # fixed before any model was trained on these splits
TEST_IDS = ("0035", "0036", "0037", "0038", "0039", "0040")
LABELLED_IDS = tuple(f"{i:04d}" for i in [*range(1, 11), *range(21, 41)])
DRAWS = 5
FRACTIONS = {"100pct": None, "25pct": 6, "12pct": 3}
SPLITS_FILE = Path(__file__).with_name("btcv.json")


def make_splits() -> dict:
    train_pool = sorted(set(LABELLED_IDS) - set(TEST_IDS))
    fractions: dict[str, list[list[str]]] = {}
    for name, size in FRACTIONS.items():
        if size is None:
            fractions[name] = [train_pool]
            continue
        fractions[name] = [sorted(random.Random(SEED + k * 1000 + size).sample(train_pool, size)) for k in range(DRAWS)]
    return {
        "dataset": "BTCV (Multi-Atlas Labeling Beyond the Cranial Vault), 30 labelled cases",
        "made_by": "splits/make_splits.py",
        "seed": SEED,
        "test": list(TEST_IDS),
        "train": fractions,
    }


def render(splits: dict) -> str:
    return json.dumps(splits, indent=2) + "\n"


if __name__ == "__main__":
    SPLITS_FILE.write_text(render(make_splits()))
    print(f"wrote {SPLITS_FILE}")
