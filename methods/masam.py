"""MA-SAM (Chen et al., Medical Image Analysis 2024): 3D adapters in every SAM block plus FacT
low-rank updates of q and v, on a frozen SAM ViT-B.

Each block gets two adapters on its residual stream, one before the attention sub-layer and one
before the MLP sub-layer (as in the authors' code): LayerNorm -> Linear C->C/2 (no bias) -> Conv3d
over depth (kernel 3x1x1, 'same', with bias) -> GELU -> Linear C/2->C (no bias) -> residual add.
FacT ("tensor-train" form): q and v updates V(dropout(core(U x))) with U: C->32 and V: 32->C
shared by all blocks (V zero-initialised) and one 32x32 core per block and projection.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.registry import register_method
from methods.sam_common import SAM_ADAPTER_FACTS, SAM_FRAME_NOTES, SamSliceEncoder, build_sam_adapted
from methods.sam_decoder import tokens_to_volume, volume_to_tokens

# The authors build every norm of a block, the adapters' too, with SAM's norm layer:
# partial(nn.LayerNorm, eps=1e-6) (segment_anything/build_sam.py), not PyTorch's default 1e-5.
ADAPTER_NORM_EPS = 1e-6


class DepthAdapter3D(nn.Module):
    """MA-SAM's 3D adapter on tokens (B*D, h, w, C) -> (B*D, h, w, C); depth D from ``context``."""

    def __init__(self, dim: int, hidden: int, context, kernel: int = 3, zero_init: bool = False):
        super().__init__()
        self.context = context
        self.norm = nn.LayerNorm(dim, eps=ADAPTER_NORM_EPS)
        self.down = nn.Linear(dim, hidden, bias=False)
        self.conv = nn.Conv3d(hidden, hidden, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim, bias=False)
        if zero_init:  # the authors keep PyTorch's default init; zero makes the block start as SAM's
            nn.init.zeros_(self.up.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.down(self.norm(tokens))
        x = volume_to_tokens(self.conv(tokens_to_volume(x, self.context.depth)))
        return tokens + self.up(self.act(x))


class FacTQKV(nn.Module):
    """Frozen fused qkv + FacT updates of q and v through shared U, V and per-block cores."""

    def __init__(self, qkv: nn.Linear, u: nn.Linear, v: nn.Linear, rank: int, dropout: float):
        super().__init__()
        self.base = qkv
        self.shared = [u, v]  # held by the encoder, not registered twice
        self.core_q = nn.Linear(rank, rank, bias=False)
        self.core_v = nn.Linear(rank, rank, bias=False)
        self.dropout = nn.Dropout(dropout)
        for core in (self.core_q, self.core_v):
            nn.init.kaiming_uniform_(core.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.shared
        hidden = u(x)
        dq = v(self.dropout(self.core_q(hidden)))
        dv = v(self.dropout(self.core_v(hidden)))
        return self.base(x) + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)


class AdaptedBlock(nn.Module):
    """A timm SAM block with MA-SAM's adapters on the residual stream before each sub-layer."""

    def __init__(self, block: nn.Module, before_attention: nn.Module, before_mlp: nn.Module):
        super().__init__()
        self.block = block
        self.before_attention = before_attention
        self.before_mlp = before_mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blk = self.block
        x = self.before_attention(x)
        y = blk.drop_path1(blk.ls1(blk.attention(blk.norm1(x))))
        x = self.before_mlp(x + y)
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


@register_method(
    "masam",
    **SAM_ADAPTER_FACTS,
    reference="Chen et al., MA-SAM: Modality-agnostic SAM Adaptation for 3D Medical Image Segmentation, Medical Image Analysis 2024",
    paper=dict(
        adapter_ratio=0.5,
        depth_kernel=3,
        fact_rank=32,
        fact_dropout=0.1,
        zero_init_adapters=False,
        slice_scale=1,
        attention="unpadded",
        vit="timm",
    ),
    smoke=dict(fact_rank=8),
    notes=(
        "adapters and FacT checked against cchen-cc/MA-SAM MA-SAM/sam_fact_tt_image_encoder.py and "
        "MA-SAM/segment_anything/modeling/image_encoder.py (adapter LayerNorm eps 1e-6, as its build_sam.py); "
        "the shared 3D decoder (xmed-lab/TP-Mamba "
        "networks/sam/sam_decoder.py) on 3D crops replaces SAM's mask decoder on 5-slice 512x512 inputs (uniform framework)"
        + SAM_FRAME_NOTES
    ),
    revision=4,
)
def build_masam(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    size: str,
    adapter_ratio: float,
    depth_kernel: int,
    fact_rank: int,
    fact_dropout: float,
    zero_init_adapters: bool,
    slice_scale: int,
    attention: str,
    vit: str,
    backbone_state: dict | None = None,
) -> nn.Module:

    def install(encoder: SamSliceEncoder) -> None:
        dim = encoder.embed_dim
        hidden = int(dim * adapter_ratio)
        encoder.fact_u = nn.Linear(dim, fact_rank, bias=False)
        encoder.fact_v = nn.Linear(fact_rank, dim, bias=False)
        nn.init.zeros_(encoder.fact_v.weight)
        blocks = encoder.vit.blocks
        for index, block in enumerate(blocks):
            block.attn.qkv = FacTQKV(block.attn.qkv, encoder.fact_u, encoder.fact_v, fact_rank, fact_dropout)
            adapters = [DepthAdapter3D(dim, hidden, encoder.context, depth_kernel, zero_init_adapters) for _ in range(2)]
            blocks[index] = AdaptedBlock(block, *adapters)

    return build_sam_adapted(in_channels, out_channels, roi_size, size, slice_scale, install, backbone_state, attention, vit)
