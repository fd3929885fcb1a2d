"""The 3D decoder of the TP-Mamba authors' code, shared by the three SAM-adapter methods, and the
token layout it and the adapters share: the ViT's slice tokens ``(B*D, h, w, C)`` seen as a volume
``(B, C, D, h, w)`` with ``D`` = the axial depth."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetResBlock
from torch import nn

# Decoder channels: the authors' 64. On the CPU profile's random frozen toy ViT the decoder does
# almost all of the learning, and its width decides how much it learns in 300 steps: masam, one
# draw, reached 11.8 / 33.7 (400 steps) / 37.5 % Avg Dice at widths 8 / 16 / 32, for 0.23 / about
# 0.31 / 0.54 s a step (two 32^3 crops, 2 cores). Narrowing it after each x2 step instead (32-16-8)
# cost about as much as 16 and learnt less (11.0 %).
DECODER_WIDTH = {"paper": 64, "smoke": 32}


def tokens_to_volume(tokens: torch.Tensor, depth: int) -> torch.Tensor:
    """(B*D, h, w, C) -> (B, C, D, h, w)."""
    bd, h, w, c = tokens.shape
    return tokens.reshape(bd // depth, depth, h, w, c).permute(0, 4, 1, 2, 3)


def volume_to_tokens(volume: torch.Tensor) -> torch.Tensor:
    """(B, C, D, h, w) -> (B*D, h, w, C)."""
    b, c, d, h, w = volume.shape
    return volume.permute(0, 2, 3, 4, 1).reshape(b * d, h, w, c)


class InPlaneUpStage(nn.Module):
    """One stage of the TP-Mamba authors' decoder: x2 in-plane, depth kept, then a residual refinement.

    ``(B, in, X, Y, Z) -> (B, out, 2X, 2Y, Z)``: transposed 3x3x3 convolution with stride (2, 2, 1)
    -> instance norm -> GELU, then ``x + GELU(IN(conv3x3x3(x)))``. Instance norms have no affine
    parameters and the convolutions keep their biases, as MONAI's ``Convolution`` and
    ``ResidualUnit`` (one subunit) that the authors build it from.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # padding 1 and output padding (1, 1, 0) give exactly (2X, 2Y, Z) for a 3x3x3 kernel
        self.up = nn.ConvTranspose3d(in_channels, out_channels, 3, stride=(2, 2, 1), padding=1, output_padding=(1, 1, 0))
        self.up_norm = nn.InstanceNorm3d(out_channels)
        self.refine = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.refine_norm = nn.InstanceNorm3d(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.up_norm(self.up(x)))
        return x + self.act(self.refine_norm(self.refine(x)))


class SliceDecoder3D(nn.Module):
    """The 3D decoder of the TP-Mamba authors' code (``SAM_Decoder``), shared by the three SAM methods.

    Each of the last four block features ``(B*D, h, w, C)`` -> ``(B, C, h, w, D)`` -> one
    :class:`InPlaneUpStage` to ``width`` channels; the four are concatenated, fused by MONAI's
    ``UnetResBlock`` (3x3x3, instance norm, GELU) to ``width``, brought to the input resolution by
    further x2 stages and classified by a 1x1x1 convolution. Depth is never resampled.
    Output ``(B, classes, X, Y, Z)`` with ``X = h * 2**upsample_steps``.

    Example (paper size, 96^3 crop, 6x6 tokens per slice: 4 steps, 6,985,486 parameters):
        >>> decoder = SliceDecoder3D(768, 4, 14, upsample_steps=4)
        >>> decoder([torch.rand(96, 6, 6, 768)] * 4, depth=96).shape
        torch.Size([1, 14, 96, 96, 96])
    """

    def __init__(self, embed_dim: int, num_features: int, out_channels: int, upsample_steps: int, width: int = 64):
        super().__init__()
        if upsample_steps < 1:
            raise ValueError(f"the decoder needs at least one x2 step, got {upsample_steps}")
        self.branches = nn.ModuleList(InPlaneUpStage(embed_dim, width) for _ in range(num_features))
        self.fuse = UnetResBlock(3, width * num_features, width, kernel_size=3, stride=1, norm_name="instance", act_name="gelu")
        self.up = nn.Sequential(*[InPlaneUpStage(width, width) for _ in range(upsample_steps - 1)])
        self.head = nn.Conv3d(width, out_channels, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], depth: int) -> torch.Tensor:
        # tokens (B*D, h, w, C) -> (B, C, h, w, D): the harness's (X, Y, Z) order
        maps = [tokens_to_volume(f, depth).permute(0, 1, 3, 4, 2) for f in features]
        fused = self.fuse(torch.cat([branch(m) for branch, m in zip(self.branches, maps, strict=True)], dim=1))
        return self.head(self.up(fused))
