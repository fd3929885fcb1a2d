"""U-Mamba (Ma et al., 2024), reimplemented on the harness's own Mamba layer (``methods/mamba.py``),
so it runs with or without the mamba-ssm kernels.

Network (the nnU-Net 96^3 plan: 5 stages of 32-320 features, strides 1, 2, 2, 2, 2, 3^3 kernels):
- encoder: a residual stem and five stages; each stage opens with a residual unit (conv-norm-act-
  conv-norm plus a 1x1x1 projection shortcut, strided) followed by dynamic-network-architectures'
  ``BasicBlockD`` blocks; 2, 2, 2, 1, 1 blocks per stage (the deeper half is cut to one, as the
  original does);
- ``Bot`` (default): LayerNorm -> Mamba on the flattened bottleneck tokens, no residual around it;
  ``Enc`` (``variant="enc"``): such a layer after every encoder stage, scanning channels as tokens
  where a stage has fewer voxels than channels (the 6^3 x 320 bottleneck of a 96^3 crop);
- decoder: nearest-neighbour x2 upsampling + 1x1x1 conv, concatenation with the skip, a residual
  unit and ``BasicBlockD`` blocks (2, 2, 2, 1 from the bottom), and a 1x1x1 head after every stage
  (the last one is the output; the others serve deep supervision).
The Mamba layers always run in float32, with autocast switched off, as the original does (a
half-precision selective scan over thousands of tokens loses the recurrence). The original trains
inside nnU-Net with deep supervision; here it gets the shared loss and schedule, and nnU-Net's deep
supervision only with ``deep_supervision=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from methods.mamba import Mamba
from methods.registry import register_method

_NORM = dict(norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True})
_ACT = dict(nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


class ResidualUnit(nn.Module):
    """conv3-norm-act-conv3-norm + 1x1x1 projection of the input, then act: (B, cin, ...) -> (B, cout, .../stride)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1)
        self.norm1 = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.norm2 = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)
        self.project = nn.Conv3d(cin, cout, 1, stride=stride)
        self.act = nn.LeakyReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(y + self.project(x))


def _stage(cin: int, cout: int, stride: int, blocks: int) -> nn.Sequential:
    extra = [BasicBlockD(nn.Conv3d, cout, cout, 3, 1, conv_bias=True, **_NORM, **_ACT) for _ in range(blocks - 1)]
    return nn.Sequential(ResidualUnit(cin, cout, stride), *extra)


class MambaLayer(nn.Module):
    """LayerNorm + Mamba over a feature map (B, C, X, Y, Z), in float32 whatever the autocast.

    Tokens are the voxels (d_model = C), or with ``channel_tokens`` the channels (d_model = voxels),
    for maps with fewer voxels than channels. Voxels are flattened in nnU-Net's array order (Z, Y, X)
    with X fastest, as the original flattens nnU-Net's tensors: the causal scan runs along X first,
    then Y, then Z (the harness's (X, Y, Z) tensors would otherwise put Z fastest).
    """

    def __init__(self, dim: int, channel_tokens: bool = False, d_state: int = 16):
        super().__init__()
        self.channel_tokens = channel_tokens
        self.norm = nn.LayerNorm(dim)
        self.mamba = Mamba(dim, d_state=d_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zyx = x.permute(0, 1, 4, 3, 2)
        with torch.autocast(x.device.type, enabled=False):
            tokens = zyx.float().flatten(2)  # (B, C, N), X fastest
            if not self.channel_tokens:
                tokens = tokens.transpose(1, 2)  # (B, N, C)
            out = self.mamba(self.norm(tokens))
            if not self.channel_tokens:
                out = out.transpose(1, 2)
        return out.reshape(zyx.shape).permute(0, 1, 4, 3, 2)


class UpsampleProject(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 1x1x1 conv to the skip's width."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UMamba(nn.Module):
    """U-Mamba Bot/Enc: (B, in, X, Y, Z) -> (B, out, X, Y, Z) for a fixed crop size (multiple of 16)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        roi_size: Sequence[int],
        features: Sequence[int] = (32, 64, 128, 256, 320),
        blocks_per_stage: int = 2,
        variant: str = "bot",
        deep_supervision: bool = False,
    ):
        super().__init__()
        if variant not in ("bot", "enc"):
            raise ValueError(f"U-Mamba variant must be 'bot' or 'enc', got {variant!r}")
        stages = len(features)
        strides = [1] + [2] * (stages - 1)
        encoder_blocks = [blocks_per_stage if s < math.ceil(stages / 2) else 1 for s in range(stages)]
        decoder_blocks = [blocks_per_stage] * (stages - 1)
        for s in range(math.ceil((stages - 1) / 2 + 0.5), stages - 1):
            decoder_blocks[s] = 1
        self.stem = _stage(in_channels, features[0], 1, encoder_blocks[0])
        self.encoder = nn.ModuleList(
            _stage(features[s - 1] if s else features[0], features[s], strides[s], encoder_blocks[s]) for s in range(stages)
        )
        voxels = [int(np.prod([r // 2**s for r in roi_size])) for s in range(stages)]
        if variant == "bot":
            self.mamba = nn.ModuleList([nn.Identity()] * (stages - 1) + [MambaLayer(features[-1])])
        else:
            self.mamba = nn.ModuleList(
                MambaLayer(voxels[s], channel_tokens=True) if voxels[s] <= features[s] else MambaLayer(features[s]) for s in range(stages)
            )
        self.up = nn.ModuleList(UpsampleProject(features[s + 1], features[s]) for s in reversed(range(stages - 1)))
        self.decoder = nn.ModuleList(
            _stage(2 * features[s], features[s], 1, decoder_blocks[stages - 2 - s]) for s in reversed(range(stages - 1))
        )
        # One 1x1x1 head per decoder stage, lowest resolution first, built whether or not deep
        # supervision is on (as the original, so weights load either way); the last is the output.
        self.heads = nn.ModuleList(nn.Conv3d(features[s], out_channels, 1) for s in reversed(range(stages - 1)))
        self.deep_supervision = deep_supervision
        self.apply(InitWeights_He(1e-2))  # nnU-Net's initialisation, as the original applies

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits at full resolution; in training mode with deep supervision, every decoder stage's
        logits, full resolution first."""
        h = self.stem(x)
        skips = []
        for stage, mamba in zip(self.encoder, self.mamba, strict=True):
            h = mamba(stage(h))
            skips.append(h)
        h = skips.pop()
        supervised = self.deep_supervision and self.training
        outputs = []
        for index, (up, decoder, head) in enumerate(zip(self.up, self.decoder, self.heads, strict=True)):
            h = decoder(torch.cat([up(h), skips.pop()], dim=1))
            if supervised or index == len(self.heads) - 1:
                outputs.append(head(h))
        return outputs[::-1] if supervised else outputs[-1]


@register_method(
    "umamba",
    family="3d-net",
    reference="Ma, Li & Wang, U-Mamba: Enhancing Long-range Dependency for Biomedical Image Segmentation, arXiv 2401.04722",
    paper=dict(variant="bot", features=(32, 64, 128, 256, 320), blocks_per_stage=2, deep_supervision=False),
    smoke=dict(features=(8, 16, 32, 64, 64)),
    size_multiple=16,
    notes=(
        "checked against bowang-lab/U-Mamba umamba/nnunetv2/nets/UMamba{Bot,Enc}_3d.py: Bot by default (--set variant=enc); "
        "Mamba in float32 under AMP; tokens in nnU-Net's order (x fastest); "
        "trained with the shared loss, deep supervision off by default (--set deep_supervision=true)"
    ),
    revision=2,
)
def build_umamba(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    variant: str,
    features: Sequence[int],
    blocks_per_stage: int,
    deep_supervision: bool,
) -> nn.Module:
    return UMamba(in_channels, out_channels, roi_size, tuple(features), blocks_per_stage, str(variant).lower(), deep_supervision)
