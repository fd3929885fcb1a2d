"""Swin UNETR (Hatamizadeh et al., BrainLes 2021) as MONAI implements it, feature size 48."""

from __future__ import annotations

from monai.networks.nets import SwinUNETR
from torch import nn

from methods.registry import register_method


@register_method(
    "swinunetr",
    family="3d-net",
    reference="Hatamizadeh et al., Swin UNETR: Swin Transformers for Semantic Segmentation of Brain Tumors in MRI Images, BrainLes 2021",
    paper=dict(feature_size=48, depths=(2, 2, 2, 2), window_size=7, norm_name="instance"),
    # CPU profile: narrowest width MONAI allows, one block per stage, 4^3 windows (a 32^3 crop has
    # 16^3 tokens; 7^3 windows would pad them to 21^3). Group norm because a 32^3 crop leaves a
    # 1x1x1 bottleneck, where instance norm has nothing to normalise.
    smoke=dict(feature_size=12, depths=(1, 1, 1, 1), window_size=4, norm_name=("group", {"num_groups": 3})),
    size_multiple=32,
    notes=(
        "MONAI's SwinUNETR with the BTCV settings of Project-MONAI/research-contributions SwinUNETR/BTCV/main.py "
        "(feature size 48, depths 2-2-2-2, 7^3 windows); trained from scratch with the shared loss and schedule"
    ),
)
def build_swinunetr(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    feature_size: int,
    depths: tuple[int, int, int, int],
    window_size: int,
    norm_name: str | tuple,
) -> nn.Module:
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        feature_size=feature_size,
        depths=tuple(depths),
        window_size=window_size,
        norm_name=norm_name,
        spatial_dims=3,
    )
