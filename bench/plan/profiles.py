"""Profiles and the resolved configuration of one run.

``paper`` is the TP-Mamba paper's uniform protocol. ``smoke`` keeps every step of it but is sized
for a 2-core CPU: coarser resampling, small crops, narrow randomly initialised networks, a few
hundred iterations. Outputs always record which profile made them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, get_args

from bench.data.settings import PreprocessSettings
from bench.errors import UserError
from bench.names import unknown_hint
from methods.options import as_type_of
from methods.registry import PUBLISHED_SIZE, ModelSize


@dataclass(frozen=True)
class Profile:
    name: str
    preprocess: PreprocessSettings
    roi: int  # cubic training crop and sliding-window size, voxels
    epochs: int
    model_size: str  # "paper" or "smoke" hyperparameters of each method
    lr: float = 2e-4
    warmup_fraction: float = 0.0  # share of all steps over which the learning rate rises linearly to lr
    weight_decay: float = 1e-5
    val_every: int = 50  # epochs between validation Dice lines in log.jsonl
    checkpoint_minutes: float = 10.0
    sw_overlap: float = 0.5
    sw_batch_size: int = 4
    num_workers: int = 4
    min_iterations_per_epoch: int = 1  # iterations per epoch at least (tiny fractions would barely train)
    crops_per_case: int = 1  # crops of one volume per iteration; the batch is these crops
    augment: bool = True  # flips and intensity/contrast augmentation on the crops (bench.pipelines.augment)
    repeats: str = "all"  # the draws of a fraction that `bench run` runs unless --repeats names others
    seed: int = 0
    # A method with its own pipeline (nnU-Net v2) gets the original files (False) or this profile's
    # preprocessed volumes (True: on a CPU, nnU-Net's plan for BTCV's originals would take hours).
    own_pipeline_gets_preprocessed: bool = False
    # Trackers every run is followed in (bench.runs.tracking), comma-separated: tensorboard, mlflow[=URI].
    track: str = ""

    @property
    def published_size(self) -> bool:
        """Whether the methods are built at their published size (the paper's networks and SAM's
        ViT-B), rather than narrowed for a CPU."""
        return self.model_size == PUBLISHED_SIZE

    def with_overrides(self, overrides: Mapping[str, Any], spelled: Mapping[str, str] | None = None) -> Profile:
        """This profile with ``overrides`` applied: each key a field of the profile or of its
        preprocessing (``spacing_mm``), each value converted to that field's type and checked;
        UserError naming the setting otherwise, as ``spelled`` writes it where the user set it by a
        flag (``{"epochs": "--epochs"}``). ``name`` stays: it says which profile was changed."""
        top, pre = {}, {}
        for key, value in overrides.items():
            if key in _OVERRIDABLE:
                top[key] = _typed(getattr(self, key), value, key)
            elif key in _PREPROCESS_FIELDS:
                pre[key] = _typed(getattr(self.preprocess, key), value, key)
            else:
                hint = unknown_hint(key, sorted(_OVERRIDABLE | _PREPROCESS_FIELDS), "the profile's settings")
                raise UserError(f"--profile-set {key}: no such setting; {hint}")
        changed = replace(self, preprocess=replace(self.preprocess, **pre), **top)
        changed.check(spelled)
        return changed

    def check(self, spelled: Mapping[str, str] | None = None) -> None:
        """UserError naming the first setting that no run could use (as ``spelled`` writes it, if there)."""
        checks = (
            ("epochs", self.epochs >= 1, "at least 1"),
            ("roi", self.roi >= 8, "at least 8 voxels"),
            ("checkpoint_minutes", self.checkpoint_minutes > 0, "positive"),
            ("lr", self.lr > 0, "positive"),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "at least 0"),
            ("val_every", self.val_every >= 1, "at least 1"),
            ("sw_overlap", 0 <= self.sw_overlap < 1, "in [0, 1)"),
            ("sw_batch_size", self.sw_batch_size >= 1, "at least 1"),
            ("num_workers", self.num_workers >= 0, "at least 0"),
            ("min_iterations_per_epoch", self.min_iterations_per_epoch >= 1, "at least 1"),
            ("crops_per_case", self.crops_per_case >= 1, "at least 1"),
            ("model_size", self.model_size in get_args(ModelSize), f"one of {', '.join(get_args(ModelSize))}"),
            ("spacing_mm", self.preprocess.spacing_mm > 0, "positive"),
            ("hu_max", self.preprocess.hu_max > self.preprocess.hu_min, "above hu_min"),
        )
        for key, ok, needs in checks:
            if not ok:
                value = getattr(self.preprocess, key) if key in _PREPROCESS_FIELDS else getattr(self, key)
                raise UserError(f"{(spelled or {}).get(key, f'profile setting {key}')} must be {needs}, got {value!r}")


_OVERRIDABLE = {f.name for f in fields(Profile)} - {"name", "preprocess"}
_PREPROCESS_FIELDS = {f.name for f in fields(PreprocessSettings)}


def _typed(default: Any, value: Any, key: str) -> Any:
    try:
        return as_type_of(default, value, f"profile setting {key}")
    except ValueError as exc:
        raise UserError(str(exc)) from None


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        preprocess=PreprocessSettings(spacing_mm=1.0),
        roi=96,
        epochs=1000,
        model_size="paper",
        val_every=50,
    ),
    # Sized so that the README's `bench run --methods tpmamba,masam --data 25pct` shows organs
    # learnt within 10 minutes on 2 CPU cores (docs/notebook.md, 2026-11-30, has the
    # measurements): 8 mm voxels put most of the abdomen in one 32^3 crop; two crops per step keep
    # PyTorch's CPU convolutions on their fast (oneDNN) path, which batch 1 misses. 300 steps is
    # where networks start to separate the organs, and at that length the learning rate of 1e-2
    # and no augmentation each bought more Dice than anything else of the same cost: augmentation
    # regularises a model that has not yet fitted. Without a warm-up the first full-rate AdamW steps
    # decided the outcome: masam gave 21.7 or 37.5 % Avg Dice with two seeds; rising over the first
    # 30 steps it gave 36.9 and 36.5 %. The time goes on one draw, not five.
    "smoke": Profile(
        name="smoke",
        preprocess=PreprocessSettings(spacing_mm=8.0),
        roi=32,
        epochs=50,
        model_size="smoke",
        lr=1e-2,
        warmup_fraction=0.1,
        val_every=5,
        checkpoint_minutes=1.0,
        sw_batch_size=8,
        num_workers=0,
        min_iterations_per_epoch=6,
        crops_per_case=2,
        augment=False,
        repeats="0",
        own_pipeline_gets_preprocessed=True,
    ),
}


def resolve_profile(name: str, has_cuda: bool) -> Profile:
    if name == "auto":
        name = "paper" if has_cuda else "smoke"
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}; {unknown_hint(name, ['auto', *PROFILES], 'choose one of')}")
    return PROFILES[name]


def parse_repeats(text: str, available: int) -> list[int]:
    if text == "all":
        return list(range(available))
    try:
        repeats = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--repeats must be 'all' or comma-separated draw numbers, got {text!r}") from None
    if not repeats or any(r < 0 or r >= available for r in repeats):
        raise UserError(f"--repeats {text!r} out of range: this fraction has draws 0..{available - 1}")
    return repeats


def profile_dict(profile: Profile) -> dict[str, Any]:
    return asdict(profile)
