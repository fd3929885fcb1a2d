"""MedNeXt (Roy et al., MICCAI 2023) through MONAI's factories (sizes S, B, M, L).

The bare ``MedNeXt`` class defaults to kernel 7 and no residual connections; the factories set
what the paper's variants use (residuals, group norm, 32 initial filters), so the harness always
builds through them. Checked against MIC-DKFZ/MedNeXt
nnunet_mednext/network_architecture/mednextv1/{MedNextV1.py, create_mednext_v1.py}. One known
difference: the original's down block into stage i+1 expands by stage i+1's ratio, MONAI's by stage
i's (B: down ratios 2, 3, 4, 4 instead of 3, 4, 4, 4), so size B has 10,511,246 parameters here
against the original's 10,526,703 (0.15 % fewer). The original trains with deep supervision; in the
uniform framework it gets the shared DiceCE loss on the full-resolution output only, like every
other method, unless ``deep_supervision=True`` (MONAI's extra output blocks, nnU-Net's weights).
"""

from __future__ import annotations

from monai.networks.nets.mednext import create_mednext
from torch import nn

from methods.registry import register_method


@register_method(
    "mednext",
    family="3d-net",
    reference="Roy et al., MedNeXt: Transformer-driven Scaling of ConvNets for Medical Image Segmentation, MICCAI 2023",
    paper=dict(variant="B", kernel_size=3, deep_supervision=False),
    smoke=dict(variant="S"),
    size_multiple=16,
    notes=(
        "MONAI's factory, checked against MIC-DKFZ/MedNeXt mednextv1/MedNextV1.py: down blocks expand by their own stage's ratio "
        "(original: the next stage's; B 10,511,246 vs 10,526,703 parameters); "
        "deep supervision of the original off by default (--set deep_supervision=true)"
    ),
)
def build_mednext(
    in_channels: int, out_channels: int, roi_size: tuple[int, int, int], variant: str, kernel_size: int, deep_supervision: bool
) -> nn.Module:
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
        deep_supervision=bool(deep_supervision),
    )
