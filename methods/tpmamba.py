"""TP-Mamba (Wang et al., MICCAI 2024): frozen SAM ViT-B + LoRA + a tri-plane Mamba adapter after
every ViT block + the shared 3D decoder.

The adapter follows the paper's Section 2.2 (the authors' released code leaves it as a TODO):
depth convolution C -> r, four parallel dilated depth convolutions (dilations 1, 2, 4, 8) of r/4
channels concatenated back to r, three Mamba scans over the height-width, depth-height and
depth-width planes summed, depth convolution r -> C (zero-initialised) and a residual add.
Ablation switches (Tables 2-4) are hyperparameters: ``planes``, ``multiscale``, ``kernel``, ``r``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from methods.mamba import Mamba
from methods.registry import register_method
from methods.sam_common import (
    SAM_ADAPTER_FACTS,
    SamSliceEncoder,
    build_sam_adapted,
    install_lora,
    tokens_to_volume,
    volume_to_tokens,
)

PLANES = ("hw", "dh", "dw")
PLANE_PRESETS = {"tri": PLANES, "hw": ("hw",), "dw": ("dw",), "dh": ("dh",)}


def to_plane(volume: torch.Tensor, plane: str) -> torch.Tensor:
    """(B, r, D, h, w) -> sequences of one plane: hw (B*D, h*w, r), dh (B*w, D*h, r), dw (B*h, D*w, r)."""
    b, r, d, h, w = volume.shape
    if plane == "hw":
        return volume.permute(0, 2, 3, 4, 1).reshape(b * d, h * w, r)
    if plane == "dh":
        return volume.permute(0, 4, 2, 3, 1).reshape(b * w, d * h, r)
    if plane == "dw":
        return volume.permute(0, 3, 2, 4, 1).reshape(b * h, d * w, r)
    raise ValueError(f"unknown plane {plane!r}; choose from {PLANES}")


def from_plane(sequences: torch.Tensor, plane: str, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_plane` for a volume of ``shape`` (B, r, D, h, w)."""
    b, r, d, h, w = shape
    if plane == "hw":
        return sequences.reshape(b, d, h, w, r).permute(0, 4, 1, 2, 3)
    if plane == "dh":
        return sequences.reshape(b, w, d, h, r).permute(0, 4, 2, 3, 1)
    if plane == "dw":
        return sequences.reshape(b, h, d, w, r).permute(0, 4, 2, 1, 3)
    raise ValueError(f"unknown plane {plane!r}; choose from {PLANES}")


def _depth_conv(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """Conv3d over depth only (kernel k x 1 x 1, 'same' padding) -> instance norm -> GELU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, (kernel, 1, 1), padding=(dilation * (kernel - 1) // 2, 0, 0), dilation=(dilation, 1, 1)),
        nn.InstanceNorm3d(out_channels, affine=True),
        nn.GELU(),
    )


class TriPlaneMambaAdapter(nn.Module):
    """Tri-plane Mamba adapter on SAM tokens: (B*D, h, w, C) -> (B*D, h, w, C), depth D from ``context``.

    Args:
        dim: token width C (768 for ViT-B).
        r: adapter width (paper default 96; ablation 24, 48, 96, 192). Must be divisible by 4 when
            multiscale.
        planes: Mamba scan planes, a subset of ("hw", "dh", "dw"); the paper's full model uses all three.
        multiscale: four parallel dilated depth convolutions (True) or one (False, Table 2's "conv").
        kernel: depth kernel of the parallel convolutions (3 or 5).
        context: shared object whose ``depth`` says how many slices form one volume.

    At initialisation the output projection is zero, so the adapter is the identity.
    """

    def __init__(self, dim: int, r: int, planes: Sequence[str], multiscale: bool, kernel: int, context, d_state: int = 16):
        super().__init__()
        planes = tuple(planes)
        if not planes or any(p not in PLANES for p in planes) or len(set(planes)) != len(planes):
            raise ValueError(f"planes must be distinct names from {PLANES}, got {planes}")
        if kernel not in (3, 5):
            raise ValueError(f"depth kernel must be 3 or 5, got {kernel}")
        if r < 4 or (multiscale and r % 4):
            raise ValueError(f"r must be a positive multiple of 4 for the four dilated branches, got {r}")
        self.context = context
        self.planes = planes
        self.down = _depth_conv(dim, r, kernel=3)
        if multiscale:
            self.local = nn.ModuleList(_depth_conv(r, r // 4, kernel, dilation) for dilation in (1, 2, 4, 8))
        else:
            self.local = nn.ModuleList([_depth_conv(r, r, kernel)])
        self.mamba = nn.ModuleDict({plane: Mamba(r, d_state=d_state) for plane in planes})
        self.up = nn.Conv3d(r, dim, (3, 1, 1), padding=(1, 0, 0), bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        volume = tokens_to_volume(tokens, self.context.depth)
        x = self.down(volume)
        x = torch.cat([branch(x) for branch in self.local], dim=1)
        mixed = sum(from_plane(self.mamba[p](to_plane(x, p)), p, x.shape) for p in self.planes)
        return tokens + volume_to_tokens(self.up(mixed))


@register_method(
    "tpmamba",
    **SAM_ADAPTER_FACTS,
    reference="Wang et al., Tri-Plane Mamba: Efficiently Adapting Segment Anything Model for 3D Medical Images, MICCAI 2024",
    paper=dict(size="paper", r=96, planes="tri", multiscale=True, kernel=3, d_state=16, lora_rank=64, lora_gelu=True, slice_scale=1),
    smoke=dict(size="smoke", r=16, d_state=8, lora_rank=8),
    notes="adapter written from the paper (the authors' release leaves it TODO)",
)
def build_tpmamba(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    size: str,
    r: int,
    planes: str | Sequence[str],
    multiscale: bool,
    kernel: int,
    d_state: int,
    lora_rank: int,
    lora_gelu: bool,
    slice_scale: int,
    backbone_state: dict | None = None,
) -> nn.Module:
    plane_list = PLANE_PRESETS.get(planes, planes) if isinstance(planes, str) else tuple(planes)
    if isinstance(plane_list, str):
        plane_list = tuple(p.strip() for p in plane_list.split(","))

    def install(encoder: SamSliceEncoder) -> None:
        install_lora(encoder, lora_rank, lora_gelu)
        encoder.after_block = nn.ModuleList(
            TriPlaneMambaAdapter(encoder.embed_dim, r, plane_list, multiscale, kernel, encoder.context, d_state) for _ in encoder.vit.blocks
        )

    return build_sam_adapted(in_channels, out_channels, roi_size, size, slice_scale, install, backbone_state)
