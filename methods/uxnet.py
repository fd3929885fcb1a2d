"""3D UX-Net (Lee et al., ICLR 2023), reimplemented from the paper and the official code's design:
an encoder of large-kernel depthwise-convolution blocks (ConvNeXt-style, 7^3 depthwise, 1x1x1
MLP convolutions grouped per channel) at four scales, and MONAI's UNETR-style decoder.

Encoder: stem conv 7^3 stride 2 -> channel-first LayerNorm; then per stage i: (downsampling by a
2^3 stride-2 conv after a LayerNorm, for i > 0) and ``depths[i]`` blocks, each
x + gamma * pw2(GELU(pw1(LN(dw7(x))))) with layer scale gamma = 1e-6; a LayerNorm on each stage's
output. Decoder: UnetrBasicBlock on the input and on each stage output, a bottleneck block to
``hidden_size`` channels, four UnetrUpBlocks, a final UnetrBasicBlock and a 1x1x1 output conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

from methods.registry import register_method


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, X, Y, Z) tensors."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class LargeKernelBlock(nn.Module):
    """(B, C, X, Y, Z) -> same: depthwise k^3 conv, LayerNorm, grouped 1x1x1 MLP (x4), layer scale, residual."""

    def __init__(self, dim: int, kernel: int = 7, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = ChannelsFirstLayerNorm(dim)
        self.pwconv1 = nn.Conv3d(dim, 4 * dim, 1, groups=dim)
        self.pwconv2 = nn.Conv3d(4 * dim, dim, 1, groups=dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.gamma[:, None, None, None] * y


class UXNet3D(nn.Module):
    """3D UX-Net: (B, in, X, Y, Z) -> (B, out, X, Y, Z); every size a multiple of 16."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depths: Sequence[int] = (2, 2, 2, 2),
        features: Sequence[int] = (48, 96, 192, 384),
        hidden_size: int = 768,
        kernel: int = 7,
    ):
        super().__init__()
        if len(depths) != 4 or len(features) != 4:
            raise ValueError("3D UX-Net has four stages: give four depths and four feature sizes")
        self.down = nn.ModuleList(
            [nn.Sequential(nn.Conv3d(in_channels, features[0], 7, stride=2, padding=3), ChannelsFirstLayerNorm(features[0]))]
            + [nn.Sequential(ChannelsFirstLayerNorm(features[i]), nn.Conv3d(features[i], features[i + 1], 2, stride=2)) for i in range(3)]
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*[LargeKernelBlock(f, kernel) for _ in range(d)]) for d, f in zip(depths, features, strict=True)
        )
        self.stage_norms = nn.ModuleList(ChannelsFirstLayerNorm(f) for f in features)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(3, cin, cout, kernel_size=3, stride=1, norm_name="instance", res_block=True)

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(3, cin, cout, kernel_size=3, upsample_kernel_size=2, norm_name="instance", res_block=True)

        self.encoders = nn.ModuleList([basic(in_channels, features[0])] + [basic(features[i], features[i + 1]) for i in range(3)])
        self.bottleneck = basic(features[3], hidden_size)
        self.decoders = nn.ModuleList(
            [up(hidden_size, features[3]), up(features[3], features[2]), up(features[2], features[1]), up(features[1], features[0])]
        )
        self.final = basic(features[0], features[0])
        self.head = UnetOutBlock(3, features[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stage_outputs = []
        h = x
        for down, stage, norm in zip(self.down, self.stages, self.stage_norms, strict=True):
            h = stage(down(h))
            stage_outputs.append(norm(h))
        skips = [self.encoders[0](x)] + [enc(s) for enc, s in zip(self.encoders[1:], stage_outputs[:3], strict=True)]
        h = self.bottleneck(stage_outputs[3])
        for decoder, skip in zip(self.decoders, reversed(skips), strict=True):
            h = decoder(h, skip)
        return self.head(self.final(h))


@register_method(
    "uxnet",
    family="3d-net",
    reference=(
        "Lee et al., 3D UX-Net: A Large Kernel Volumetric ConvNet Modernizing Hierarchical Transformer "
        "for Medical Image Segmentation, ICLR 2023"
    ),
    paper=dict(depths=(2, 2, 2, 2), features=(48, 96, 192, 384), hidden_size=768, kernel=7),
    smoke=dict(depths=(1, 1, 1, 1), features=(8, 16, 32, 64), hidden_size=128),
    size_multiple=16,
    notes=(
        "reimplemented (no maintained package), checked against MASILab/3DUX-Net networks/UXNet_3D/{network_backbone,uxnet_encoder}.py; "
        "trained with the shared loss and schedule"
    ),
)
def build_uxnet(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    depths: Sequence[int],
    features: Sequence[int],
    hidden_size: int,
    kernel: int,
) -> nn.Module:
    return UXNet3D(in_channels, out_channels, depths, features, hidden_size, kernel)
