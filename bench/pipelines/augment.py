"""The training augmentation of every method (the paper's protocol): crops balanced between
foreground and background centres, then flips, intensity scale/shift and contrast (off in the smoke
profile, see ``bench.plan.profiles``); and the random
states inside the chain, which a checkpoint saves so a resumed run draws the crops it would have."""

from __future__ import annotations


def train_transforms(roi: int, crops_per_case: int = 1, augment: bool = True):
    from monai.transforms import (
        Compose,
        FgBgToIndicesd,
        RandAdjustContrastd,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    keys = ("image", "label")
    crops = [
        SpatialPadd(keys=keys, spatial_size=(roi,) * 3),
        # Computed once while caching: searching the label for every crop is 100x slower.
        FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg", image_key="image", image_threshold=0.0),
        RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=(roi,) * 3,
            pos=1,
            neg=1,
            num_samples=crops_per_case,
            fg_indices_key="label_fg",
            bg_indices_key="label_bg",
        ),
    ]
    augmentation = [
        RandFlipd(keys=keys, prob=0.1, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.1, spatial_axis=1),
        RandFlipd(keys=keys, prob=0.1, spatial_axis=2),
        RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
    ]
    return Compose(crops + augmentation if augment else crops)


def random_states(transform) -> list:
    """Every random state in a transform chain, including those of wrapped inner transforms
    (RandCropByPosNegLabeld draws from its cropper's generator, not its own)."""
    from monai.transforms import Compose, Randomizable

    found: list = []
    seen: set[int] = set()

    def visit(obj) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Compose):
            for t in obj.transforms:
                visit(t)
            return
        if isinstance(obj, Randomizable):
            found.append(obj)
            for value in vars(obj).values():
                if isinstance(value, Randomizable | Compose):
                    visit(value)

    visit(transform)
    return found
