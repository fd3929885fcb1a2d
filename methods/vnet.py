"""V-Net (Milletari et al., 3DV 2016) as MONAI implements it, with MONAI's defaults.

MONAI's V-Net activates with ELU throughout (the paper uses PReLU) and drops out with p = 0.5 in its
two deepest down and up transitions.
"""

from __future__ import annotations

from monai.networks.nets import VNet
from torch import nn

from methods.registry import register_method


@register_method(
    "vnet",
    family="3d-net",
    reference="Milletari et al., V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image Segmentation, 3DV 2016",
    paper=dict(dropout_prob_down=0.5, dropout_prob_up=(0.5, 0.5)),
    # MONAI's V-Net has a fixed width (16 -> 256 channels); the CPU profile only shrinks the crop.
    smoke=dict(),
    size_multiple=16,
    notes=(
        "MONAI's monai/networks/nets/vnet.py with its defaults: ELU activations (the paper's PReLU is not used), "
        "dropout 0.5 in the deep transitions; trained with the shared DiceCE loss instead of the paper's Dice loss"
    ),
)
def build_vnet(
    in_channels: int, out_channels: int, roi_size: tuple[int, int, int], dropout_prob_down: float, dropout_prob_up: tuple[float, float]
) -> nn.Module:
    return VNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        dropout_prob_down=dropout_prob_down,
        dropout_prob_up=tuple(dropout_prob_up),
    )
