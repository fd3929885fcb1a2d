"""The training loss as every method gets it, with nnU-Net's deep supervision for networks that
return one output per decoder stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def deep_supervision_weights(outputs: int) -> list[float]:
    """nnU-Net's loss weights for deep supervision, full resolution first: 1/2^i, the lowest
    resolution's weight 0, normalised to sum to 1."""
    weights = [1 / 2**i for i in range(outputs)]
    if outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def supervised_loss(loss_fn: Callable, logits: torch.Tensor | Sequence[torch.Tensor], label: torch.Tensor) -> torch.Tensor:
    """The training loss of one batch. A network with deep supervision returns its outputs as a
    sequence, full resolution first (in training mode only); each is scored against the label
    downsampled to its size by nearest neighbour ("nearest-exact", as nnU-Net's
    DownsampleSegForDSTransform), with :func:`deep_supervision_weights`."""
    if isinstance(logits, torch.Tensor):
        return loss_fn(logits.float(), label)
    total = torch.zeros((), device=label.device)
    for weight, output in zip(deep_supervision_weights(len(logits)), logits, strict=True):
        if weight == 0:
            continue
        target = label
        if output.shape[2:] != label.shape[2:]:
            target = F.interpolate(label.float(), size=output.shape[2:], mode="nearest-exact")
        total = total + weight * loss_fn(output.float(), target)
    return total
