"""A second built-in synthetic dataset with another label set, AMOS-like: the synthetic abdomen's
organs under AMOS's 15 label values (BTCV's names where BTCV has the organ; the portal and splenic
veins, which AMOS does not label, are painted but left background) plus the duodenum, the urinary
bladder and the prostate/uterus. Written in the Decathlon layout with its ``dataset.json``, so
everything that reads label sets from data runs on it offline. Not AMOS: stamped synthetic."""

from __future__ import annotations

import numpy as np

from bench.data.labels import ORGANS
from bench.data.phantom import rotation

# AMOS's label values 1..15: BTCV's organs but the portal and splenic veins (AMOS does not label
# them), in BTCV's order and under BTCV's names (so scores can be matched by name), then three more.
AMOS_ORGANS: tuple[str, ...] = (*(o for o in ORGANS if o != "portal and splenic veins"), "duodenum", "bladder", "prostate/uterus")
# The 30 cases of the synthetic AMOS-like set: ids of their own, so their anatomy is drawn anew.
AMOS_IDS: tuple[str, ...] = tuple(f"{i:04d}" for i in range(501, 531))
_EXTRA = {"duodenum": len(ORGANS) + 1, "bladder": len(ORGANS) + 2, "prostate/uterus": len(ORGANS) + 3}


def paint_amos_organs(c, stomach_c) -> None:
    """The duodenum below and right of the stomach, the bladder and the prostate/uterus at the
    bottom of the field of view (the pelvis starts there)."""
    rng, p, size, axes = c.rng, c.p, c.size, c.axes
    z_lo = c.z_range[0]
    duodenum_c = (stomach_c[0] - 60 * size, stomach_c[1] + 18 * size, stomach_c[2] - 48 * size)
    p.paint(*p.ellipsoid(duodenum_c, axes((28, 11, 12), 0.15), rotation(rng, 10, 10)), _EXTRA["duodenum"], rng.uniform(40, 70))
    bladder_c = (rng.uniform(-6, 6), -50 * size, z_lo + 28 * size)
    p.paint(*p.ellipsoid(bladder_c, axes((34, 26, 24), 0.2), rotation(rng, 0, 8)), _EXTRA["bladder"], rng.uniform(0, 15))
    pelvic_c = (rng.uniform(-4, 4), -8 * size, z_lo + 16 * size)
    p.paint(*p.ellipsoid(pelvic_c, axes((20, 16, 16), 0.2), rotation(rng, 0, 10)), _EXTRA["prostate/uterus"], rng.uniform(35, 60))


# BTCV's painted values (and the three extra ones) -> AMOS's; veins -> background.
TO_AMOS = np.zeros(len(ORGANS) + 4, dtype=np.uint8)
for _name, _value in [*((o, i + 1) for i, o in enumerate(ORGANS)), *_EXTRA.items()]:
    TO_AMOS[_value] = AMOS_ORGANS.index(_name) + 1 if _name in AMOS_ORGANS else 0


def amos_dataset_json(case_ids) -> dict:
    return {
        "name": "AMOS-like synthetic abdomen (not AMOS)",
        "description": "written by bench data synth --dataset amos",
        "labels": {"0": "background", **{str(i + 1): organ for i, organ in enumerate(AMOS_ORGANS)}},
        "training": [{"image": f"imagesTr/amos_{cid}.nii.gz", "label": f"labelsTr/amos_{cid}.nii.gz"} for cid in case_ids],
    }
