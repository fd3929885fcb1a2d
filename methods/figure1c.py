"""The four adapters of the TP-Mamba paper's Figure 1(c), built for one SAM ViT-B block so that what
each adds to the block's cost can be counted (``bench flops``).

- ``lora``: LoRA on q and v of the block's qkv at rank r (its own branches; the frozen projection is
  the block's, not the adapter's);
- ``conv3d``: MA-SAM's 3D adapter with r hidden channels;
- ``sa``: :class:`VolumeSelfAttentionAdapter`, the self-attention adapter the figure compares;
- ``tpmamba``: the tri-plane Mamba adapter at r.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from methods.masam import DepthAdapter3D
from methods.sam_common import LoRAQKV, SliceContext, build_sam_vit
from methods.tpmamba import PLANES, TriPlaneMambaAdapter


class VolumeSelfAttentionAdapter(nn.Module):
    """The self-attention adapter of the paper's Figure 1(c), as its 18.86 GMACs imply.

    Attention over every token of the volume at the full width C with the tokens themselves as
    queries, keys and values (Q K^T and A V: 2 * N^2 * C multiply-adds for N = D*h*w tokens), then one
    down projection C -> r and one up projection r -> C (2 * N * C * r), added to the tokens. At a
    96^3 input (N = 96 * 6 * 6 = 3456, C = 768) and r = 96 that is 18.855 GMACs. Tokens
    (B*D, h, w, C) -> same; a measuring device, not a method.
    """

    def __init__(self, dim: int, r: int, context):
        super().__init__()
        self.context = context
        self.down = nn.Linear(dim, r, bias=False)
        self.up = nn.Linear(r, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bd, h, w, c = tokens.shape
        x = tokens.reshape(bd // self.context.depth, -1, c)
        attended = torch.softmax(x @ x.transpose(1, 2) / c**0.5, dim=-1) @ x
        return tokens + self.up(self.down(attended)).reshape(tokens.shape)


def figure1c_adapters(dim: int, r: int, context) -> dict[str, tuple[nn.Module, nn.Module | None, int]]:
    """name -> (module with the adapter, the module without it or None, the adapter's own parameters).

    An adapter's added cost is the module's count minus that of the module without it.
    """
    qkv = nn.Linear(dim, 3 * dim)
    lora = LoRAQKV(qkv, r)
    adapters: dict[str, tuple[nn.Module, nn.Module | None, int]] = {
        "lora": (lora, qkv, sum(p.numel() for n, p in lora.named_parameters() if n.startswith("lora_")))
    }
    for name, module in (
        ("conv3d", DepthAdapter3D(dim, r, context)),
        ("sa", VolumeSelfAttentionAdapter(dim, r, context)),
        ("tpmamba", TriPlaneMambaAdapter(dim, r, PLANES, True, 3, context)),
    ):
        adapters[name] = (module, None, sum(p.numel() for p in module.parameters()))
    return adapters


@dataclass
class Figure1cSetup:
    """What ``bench flops`` counts for Figure 1(c): the tokens of one volume, each adapter (see
    ``figure1c_adapters``) and SAM ViT-B's own blocks, its window block also without padding."""

    tokens: torch.Tensor  # (D, h, w, C): D = input slices of h = w = input * slice_scale / 16 tokens
    adapters: dict[str, tuple[nn.Module, nn.Module | None, int]]
    window_block: nn.Module  # timm's computation: the slice's tokens padded to SAM's 14 x 14 window
    window_block_unpadded: nn.Module  # the same block without padding tokens (methods.sam_windows), what runs by default
    global_block: nn.Module
    window_size: int


def figure1c_setup(input_size: int, rank: int, slice_scale: int = 1) -> Figure1cSetup:
    torch.manual_seed(0)
    grid = input_size * slice_scale // 16
    context = SliceContext(depth=input_size)
    vit = build_sam_vit("paper", attention="padded")
    window = vit.blocks[0]
    unpadded = copy.deepcopy(window)
    unpadded.attention_mode = "unpadded"
    return Figure1cSetup(
        tokens=torch.randn(input_size, grid, grid, 768),
        adapters=figure1c_adapters(768, rank, context),
        window_block=window,
        window_block_unpadded=unpadded,
        global_block=vit.blocks[2],
        window_size=window.window_size,
    )
