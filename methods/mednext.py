"""MedNeXt (Roy et al., MICCAI 2023) through MONAI's factories (sizes S, B, M, L).

The bare ``MedNeXt`` class defaults to kernel 7 and no residual connections; the factories set
what the paper's variants use (residuals, group norm, 32 initial filters), so the harness always
builds through them. The original trains with deep supervision; in the uniform framework it gets
the shared DiceCE loss on the full-resolution output only, like every other method.
"""

from __future__ import annotations

from monai.networks.nets.mednext import create_mednext
from torch import nn

from methods.registry import register_method


@register_method(
    "mednext",
    family="3d-net",
    reference="Roy et al., MedNeXt: Transformer-driven Scaling of ConvNets for Medical Image Segmentation, MICCAI 2023",
    paper=dict(variant="B", kernel_size=3),
    smoke=dict(variant="S"),
    size_multiple=16,
    notes="deep supervision of the original off: same loss and schedule as every method",
)
def build_mednext(in_channels: int, out_channels: int, roi_size: tuple[int, int, int], variant: str, kernel_size: int) -> nn.Module:
    if str(variant).upper() not in ("S", "B", "M", "L"):
        raise ValueError(f"MedNeXt variant must be S, B, M or L, got {variant!r}")
    if kernel_size not in (3, 5):
        raise ValueError(f"MedNeXt kernel must be 3 or 5, got {kernel_size}")
    return create_mednext(
        str(variant).upper(),
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        deep_supervision=False,
    )
