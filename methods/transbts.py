"""TransBTS (Wang et al., MICCAI 2021) in the single-channel 96^3 configuration used by 3D UX-Net's
comparison, reimplemented from the official design.

A CNN encoder (16-32-64-128 channels, residual blocks, stride-2 convs) takes the volume to 1/8
resolution; a 3^3 conv embeds it to 512 channels, the 12^3 = 1728 tokens get a learned position
embedding and run through 4 pre-norm transformer layers (8 heads, MLP 4096); the last layer's
tokens are folded back to a volume and decoded with skip connections from the CNN encoder. As in
the original, the encoder's residual blocks use GroupNorm(8) and the embedding, bottleneck and
decoder blocks BatchNorm3d.

Checked against Rubics-Xuan/TransBTS models/TransBTS/{TransBTS_downsample8x_skipconnection.py,
Unet_skipconnection.py, Transformer.py}. Departures, all deliberate: the original applies ``F.dropout3d`` after its first conv without
passing ``training``, so it drops channels at inference too; here it is an ``nn.Dropout3d`` that
eval mode switches off. Two layers the original builds but never uses in this configuration (a
linear patch encoding and a final LayerNorm whose output the decoder ignores) are left out
(66,048 + 1,024 parameters). The learned position embedding fixes the crop at 96^3.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.registry import register_method

# The encoder's residual blocks normalise with GroupNorm(8): the original's normalization(..., norm="gn")
# default. Batch statistics at batch size 1 would train on other statistics than they evaluate with.
NORM_GROUPS = 8


class ResidualBlock(nn.Module):
    """Pre-activation residual block of the encoder: x + conv(relu(gn(conv(relu(gn(x)))))), GroupNorm(8)."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % NORM_GROUPS:
            raise ValueError(f"TransBTS encoder widths must be multiples of {NORM_GROUPS} (GroupNorm groups), got {channels}")
        self.body = nn.Sequential(
            nn.GroupNorm(NORM_GROUPS, channels),
            nn.ReLU(inplace=False),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.GroupNorm(NORM_GROUPS, channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConvBlock(nn.Module):
    """conv-bn-relu-conv-bn-relu with an optional residual (the decoder's blocks)."""

    def __init__(self, cin: int, cout: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class UpConcat(nn.Module):
    """1x1x1 conv down to cout, x2 transposed conv, concatenation with the skip, 1x1x1 fuse."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.reduce = nn.Conv3d(cin, cout, 1)
        self.up = nn.ConvTranspose3d(cout, cout, 2, stride=2)
        self.fuse = nn.Conv3d(2 * cout, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([skip, self.up(self.reduce(x))], dim=1))


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + drop(attn(LN(x))), then x + mlp(LN(x)); qkv without bias, as the original."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, bias=False, batch_first=True)
        # qkv keeps nn.Linear's default initialisation, as the original's nn.Linear(dim, 3 * dim) does;
        # nn.MultiheadAttention would make it xavier-uniform.
        nn.init.kaiming_uniform_(self.attn.in_proj_weight, a=math.sqrt(5))
        self.attn.out_proj = nn.Linear(dim, dim)  # the original's projection has a bias; qkv has none
        # Two dropouts in series, as the original: its SelfAttention's proj_drop (the attention rate),
        # then PreNormDrop's (the layer rate), about 0.19 in all at 0.1 each.
        self.drop = nn.Sequential(nn.Dropout(attn_dropout), nn.Dropout(dropout))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop(self.attn(y, y, y, need_weights=False)[0])
        return x + self.mlp(self.norm2(x))


class TransBTS(nn.Module):
    """(B, in, S, S, S) -> (B, classes, S, S, S) for the crop size S it was built for (multiple of 8)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_dim: int,
        base: int = 16,
        embed_dim: int = 512,
        heads: int = 8,
        layers: int = 4,
        mlp_dim: int = 4096,
        dropout: float = 0.1,
        input_dropout: float = 0.2,
    ):
        super().__init__()
        if img_dim % 8:
            raise ValueError(f"TransBTS needs a crop divisible by 8, got {img_dim}")
        self.img_dim = img_dim
        c1, c2, c3, c4 = base, 2 * base, 4 * base, 8 * base
        self.stem = nn.Sequential(nn.Conv3d(in_channels, c1, 3, padding=1), nn.Dropout3d(input_dropout))
        self.enc1 = ResidualBlock(c1)
        self.enc2 = nn.Sequential(nn.Conv3d(c1, c2, 3, stride=2, padding=1), ResidualBlock(c2), ResidualBlock(c2))
        self.enc3 = nn.Sequential(nn.Conv3d(c2, c3, 3, stride=2, padding=1), ResidualBlock(c3), ResidualBlock(c3))
        self.enc4 = nn.Sequential(nn.Conv3d(c3, c4, 3, stride=2, padding=1), *[ResidualBlock(c4) for _ in range(4)])
        self.embed = nn.Sequential(nn.BatchNorm3d(c4), nn.ReLU(inplace=True), nn.Conv3d(c4, embed_dim, 3, padding=1))
        self.tokens = (img_dim // 8) ** 3
        self.position = nn.Parameter(torch.zeros(1, self.tokens, embed_dim))
        self.position_dropout = nn.Dropout(dropout)
        self.transformer = nn.Sequential(*[TransformerLayer(embed_dim, heads, mlp_dim, dropout, dropout) for _ in range(layers)])
        self.bottleneck = nn.Sequential(
            ConvBlock(embed_dim, embed_dim // 4, residual=False), ConvBlock(embed_dim // 4, embed_dim // 4, residual=True)
        )
        self.up3, self.dec3 = UpConcat(embed_dim // 4, c3), ConvBlock(c3, c3, residual=True)
        self.up2, self.dec2 = UpConcat(c3, c2), ConvBlock(c2, c2, residual=True)
        self.up1, self.dec1 = UpConcat(c2, c1), ConvBlock(c1, c1, residual=True)
        self.head = nn.Conv3d(c1, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (self.img_dim,) * 3:
            raise ValueError(f"this TransBTS was built for {self.img_dim}^3 crops, got {tuple(x.shape[2:])}")
        s1 = self.enc1(self.stem(x))
        s2 = self.enc2(s1)
        s3 = self.enc3(s2)
        h = self.embed(self.enc4(s3))  # (B, E, S/8, S/8, S/8)
        b, e, d, hh, w = h.shape
        t = self.position_dropout(h.flatten(2).transpose(1, 2) + self.position)
        t = self.transformer(t)
        h = self.bottleneck(t.transpose(1, 2).reshape(b, e, d, hh, w))
        h = self.dec3(self.up3(h, s3))
        h = self.dec2(self.up2(h, s2))
        h = self.dec1(self.up1(h, s1))
        return self.head(h)


@register_method(
    "transbts",
    family="3d-net",
    reference="Wang et al., TransBTS: Multimodal Brain Tumor Segmentation Using Transformer, MICCAI 2021",
    paper=dict(img_dim=96, base=16, embed_dim=512, heads=8, layers=4, mlp_dim=4096),
    smoke=dict(img_dim=None, base=8, embed_dim=64, heads=4, layers=2, mlp_dim=128),
    size_multiple=8,
    required_crop="img_dim",
    notes=(
        "checked against Rubics-Xuan/TransBTS models/TransBTS/{TransBTS_downsample8x_skipconnection,Unet_skipconnection}.py: "
        "96^3 crops only (learned position embedding); dropout3d off in eval, unlike the original; "
        "an unused linear encoding and final LayerNorm left out; the attention branch's two dropouts in series and "
        "qkv's nn.Linear initialisation as models/TransBTS/Transformer.py"
    ),
    revision=3,
)
def build_transbts(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    img_dim: int | None,
    base: int,
    embed_dim: int,
    heads: int,
    layers: int,
    mlp_dim: int,
) -> nn.Module:
    if len(set(roi_size)) != 1:
        raise ValueError(f"TransBTS needs a cubic crop, got {tuple(roi_size)}")
    if img_dim is not None and roi_size[0] != img_dim:
        raise ValueError(
            f"TransBTS is defined for {img_dim}^3 crops (a learned position embedding of {(img_dim // 8) ** 3} tokens); "
            f"this run's crop is {roi_size[0]}^3: use --roi {img_dim}"
        )
    return TransBTS(in_channels, out_channels, img_dim or roi_size[0], base, embed_dim, heads, layers, mlp_dim)
