"""BTCV label definitions shared by the synthetic generator, the checks, the metrics and the reports."""

from __future__ import annotations

# Index i+1 is the label value of ORGANS[i]; 0 is background.
ORGANS: tuple[str, ...] = (
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "portal and splenic veins",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
)
# Column names of the TP-Mamba paper's Table 1, in label order.
ORGAN_COLUMNS: tuple[str, ...] = (
    "Sple",
    "Rkid",
    "Lkid",
    "Gall",
    "Eso",
    "Liver",
    "Sto",
    "Aorta",
    "IVC",
    "Veins",
    "Panc",
    "Rad",
    "Lad",
)
NUM_CLASSES = len(ORGANS) + 1  # background included
LABEL_VALUES = frozenset(range(NUM_CLASSES))
