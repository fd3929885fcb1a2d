"""UNETR (Hatamizadeh et al., WACV 2022) as MONAI implements it, in its BTCV configuration."""

from __future__ import annotations

from monai.networks.nets import UNETR
from torch import nn

from methods.registry import register_method


@register_method(
    "unetr",
    family="3d-net",
    reference="Hatamizadeh et al., UNETR: Transformers for 3D Medical Image Segmentation, WACV 2022",
    paper=dict(feature_size=16, hidden_size=768, mlp_dim=3072, num_heads=12),
    # A narrow ViT for the CPU profile: same structure (12 layers, skips from layers 3/6/9).
    smoke=dict(feature_size=8, hidden_size=192, mlp_dim=768, num_heads=4),
    size_multiple=16,
    notes=(
        "MONAI's UNETR with the BTCV settings of Project-MONAI/research-contributions UNETR/BTCV/main.py "
        "(feature 16, hidden 768, MLP 3072, 12 heads, perceptron embedding, instance norm, residual blocks); "
        "trained with the shared loss and schedule"
    ),
)
def build_unetr(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    feature_size: int,
    hidden_size: int,
    mlp_dim: int,
    num_heads: int,
) -> nn.Module:
    # Learned position embeddings tie the network to the crop size: built for roi_size, and the
    # sliding-window inferer feeds it windows of exactly that size.
    return UNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        img_size=roi_size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        proj_type="perceptron",
        norm_name="instance",
        res_block=True,
        dropout_rate=0.0,
    )
