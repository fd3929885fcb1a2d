"""A second built-in synthetic dataset with another label set, AMOS-like: the synthetic abdomen's
organs under AMOS's 15 label values and AMOS's own names ("gall bladder", "postcava": matched to
BTCV's by meaning, ``bench.data.labels.how_alike``; the portal and splenic veins, which AMOS does
not label, are painted but left background) plus the duodenum, the urinary bladder and the
prostate/uterus. Written in the Decathlon layout with its ``dataset.json``, so
everything that reads label sets from data runs on it offline. Not AMOS: stamped synthetic."""

from __future__ import annotations

import numpy as np

from bench.data.labels import ORGANS
from bench.data.phantom import rotation

# AMOS22's CT label values 1..15 under its names: BTCV's organs but the portal and splenic veins, in
# BTCV's order, then three more.
AMOS_ORGANS: tuple[str, ...] = (
    "spleen", "right kidney", "left kidney", "gall bladder", "esophagus", "liver", "stomach", "aorta", "postcava",
    "pancreas", "right adrenal gland", "left adrenal gland", "duodenum", "bladder", "prostate/uterus",
)  # fmt: skip
# AMOS's value of each of BTCV's 13 organs (0: AMOS does not label it).
_AMOS_VALUE_OF_BTCV = (1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 10, 11, 12)
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
TO_AMOS = np.array([0, *_AMOS_VALUE_OF_BTCV, *(AMOS_ORGANS.index(name) + 1 for name in _EXTRA)], dtype=np.uint8)


def amos_dataset_json(case_ids) -> dict:
    return {
        "name": "AMOS-like synthetic abdomen (not AMOS)",
        "description": "written by bench data synth --dataset amos",
        "labels": {"0": "background", **{str(i + 1): organ for i, organ in enumerate(AMOS_ORGANS)}},
        "training": [{"image": f"imagesTr/amos_{cid}.nii.gz", "label": f"labelsTr/amos_{cid}.nii.gz"} for cid in case_ids],
    }
