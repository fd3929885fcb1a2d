"""TP-Mamba (Wang et al., MICCAI 2024): frozen SAM ViT-B + LoRA + a tri-plane Mamba adapter after
every ViT block + the shared 3D decoder.

The adapter's structure is the paper's Section 2.2: depth convolution C -> r, four parallel dilated
depth convolutions (dilations 1, 2, 4, 8) of r/4 channels concatenated back to r, Mamba scans over
the height-width, depth-height and depth-width planes summed, depth convolution r -> C
(zero-initialised) and a residual add. The details the paper leaves open come from the authors'
release (xmed-lab/TP-Mamba):
- networks/sam/adapters.py ``Adapter_MSConv`` (the released multi-scale convolution adapter):
  depth convolutions without bias, instance norms without affine parameters, Kaiming-normal
  (fan-in) weights before each norm, the up convolution zero-initialised, and one kernel size
  (Table 2's k) for the down, branch and up convolutions;
- networks/sam/samunet_mamba.py ``adapter3`` (their design code for one scan plane): Mamba(r,
  d_state 16, d_conv 4, expand 2) followed by LayerNorm(r) and GELU; its mode 0 scans the whole
  volume as one depth-major sequence (Table 3's "volume flattening", ``planes="volume"``);
- networks/sam/sam_ms.py: LoRA of rank 64 with a GELU on q and v of every block.
Deliberate departure: r = 96, the value of the paper's Figure 1(c) and Table 4, where the released
code uses 768 / 4 = 192 (``--set r=192``).
Ablation switches (Tables 2-4) are hyperparameters: ``planes``, ``multiscale``, ``kernel``, ``r``,
``mamba_norm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from methods.mamba import Mamba
from methods.registry import register_method
from methods.sam_common import SAM_ADAPTER_FACTS, SAM_FRAME_NOTES, SamSliceEncoder, build_sam_adapted, install_lora
from methods.sam_decoder import tokens_to_volume, volume_to_tokens

PLANES = ("hw", "dh", "dw")
# "volume": the whole crop as one depth-major sequence (Table 3's volume flattening).
SCAN_PLANES = (*PLANES, "volume")
PLANE_PRESETS = {"tri": PLANES, **{plane: (plane,) for plane in SCAN_PLANES}}


def to_plane(volume: torch.Tensor, plane: str) -> torch.Tensor:
    """(B, r, D, h, w) -> sequences of one plane: hw (B*D, h*w, r), dh (B*w, D*h, r), dw (B*h, D*w, r),
    volume (B, D*h*w, r); the last-named axis runs fastest."""
    b, r, d, h, w = volume.shape
    if plane == "hw":
        return volume.permute(0, 2, 3, 4, 1).reshape(b * d, h * w, r)
    if plane == "dh":
        return volume.permute(0, 4, 2, 3, 1).reshape(b * w, d * h, r)
    if plane == "dw":
        return volume.permute(0, 3, 2, 4, 1).reshape(b * h, d * w, r)
    if plane == "volume":
        return volume.permute(0, 2, 3, 4, 1).reshape(b, d * h * w, r)
    raise ValueError(f"unknown plane {plane!r}; choose from {SCAN_PLANES}")


def from_plane(sequences: torch.Tensor, plane: str, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_plane` for a volume of ``shape`` (B, r, D, h, w)."""
    b, r, d, h, w = shape
    if plane in ("hw", "volume"):
        return sequences.reshape(b, d, h, w, r).permute(0, 4, 1, 2, 3)
    if plane == "dh":
        return sequences.reshape(b, w, d, h, r).permute(0, 4, 2, 3, 1)
    if plane == "dw":
        return sequences.reshape(b, h, d, w, r).permute(0, 4, 2, 1, 3)
    raise ValueError(f"unknown plane {plane!r}; choose from {SCAN_PLANES}")


def parse_planes(planes: str | Sequence[str]) -> tuple[str, ...]:
    """A preset ("tri", "hw", ..., "volume"), a comma list ("hw,dw") or a sequence -> plane names."""
    if isinstance(planes, str):
        planes = PLANE_PRESETS.get(planes.strip(), tuple(p.strip() for p in planes.split(",")))
    return tuple(planes)


def depth_conv(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """Conv3d over depth only (k x 1 x 1, 'same' padding, no bias) -> instance norm (no affine) -> GELU.

    The weight gets Kaiming-normal (fan-in) initialisation, as the authors' ``Adapter_MSConv``; a
    bias would be removed by the instance norm anyway.
    """
    conv = nn.Conv3d(
        in_channels, out_channels, (kernel, 1, 1), padding=(dilation * (kernel // 2), 0, 0), dilation=(dilation, 1, 1), bias=False
    )
    nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
    return nn.Sequential(conv, nn.InstanceNorm3d(out_channels), nn.GELU())


class PlaneMamba(nn.Module):
    """Mamba over the sequences of one scan plane, then LayerNorm(r) and GELU (``norm=False``: Mamba alone)."""

    def __init__(self, r: int, d_state: int, norm: bool):
        super().__init__()
        self.mamba = Mamba(r, d_state=d_state)
        self.post = nn.Sequential(nn.LayerNorm(r), nn.GELU()) if norm else nn.Identity()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        return self.post(self.mamba(sequences))


class TriPlaneMambaAdapter(nn.Module):
    """Tri-plane Mamba adapter on SAM tokens: (B*D, h, w, C) -> (B*D, h, w, C), depth D from ``context``.

    Args:
        dim: token width C (768 for ViT-B).
        r: adapter width (paper default 96; ablation 24, 48, 96, 192). Must be divisible by 4 when
            multiscale.
        planes: Mamba scan planes, distinct names from ("hw", "dh", "dw", "volume"); the paper's full
            model uses the first three.
        multiscale: four parallel dilated depth convolutions (True) or one (False, Table 2's "conv").
        kernel: depth kernel of the down, branch and up convolutions (3 or 5).
        context: shared object whose ``depth`` says how many slices form one volume.
        d_state: Mamba state size.
        mamba_norm: LayerNorm(r) + GELU after each plane's Mamba (the authors' design code).

    At initialisation the up convolution is zero, so the adapter is the identity.

    Example:
        >>> from methods.sam_common import SliceContext
        >>> adapter = TriPlaneMambaAdapter(768, 96, PLANES, True, 3, SliceContext(depth=8))
        >>> adapter(torch.rand(8, 6, 6, 768)).shape
        torch.Size([8, 6, 6, 768])
    """

    def __init__(
        self,
        dim: int,
        r: int,
        planes: Sequence[str],
        multiscale: bool,
        kernel: int,
        context,
        d_state: int = 16,
        mamba_norm: bool = True,
    ):
        super().__init__()
        planes = tuple(planes)
        if not planes or any(p not in SCAN_PLANES for p in planes) or len(set(planes)) != len(planes):
            raise ValueError(f"planes must be distinct names from {SCAN_PLANES} (or 'tri'), got {planes}")
        if kernel not in (3, 5):
            raise ValueError(f"depth kernel must be 3 or 5, got {kernel}")
        if r < 4 or (multiscale and r % 4):
            raise ValueError(f"r must be a positive multiple of 4 for the four dilated branches, got {r}")
        self.context = context
        self.planes = planes
        self.down = depth_conv(dim, r, kernel)
        if multiscale:
            self.local = nn.ModuleList(depth_conv(r, r // 4, kernel, dilation) for dilation in (1, 2, 4, 8))
        else:
            self.local = nn.ModuleList([depth_conv(r, r, kernel)])
        self.mamba = nn.ModuleDict({plane: PlaneMamba(r, d_state, mamba_norm) for plane in planes})
        self.up = nn.Conv3d(r, dim, (kernel, 1, 1), padding=(kernel // 2, 0, 0), bias=False)
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
    paper=dict(
        r=96,
        planes="tri",
        multiscale=True,
        kernel=3,
        d_state=16,
        mamba_norm=True,
        lora_rank=64,
        lora_gelu=True,
        slice_scale=1,
        attention="unpadded",
        vit="timm",
    ),
    smoke=dict(r=16, d_state=8, lora_rank=8),
    notes=(
        "checked against xmed-lab/TP-Mamba networks/sam/{sam_ms.py, adapters.py, samunet_mamba.py, sam_decoder.py}: "
        "convolutions, norms and init of Adapter_MSConv; Mamba + LayerNorm + GELU per plane from the design code "
        "(released for one plane; three summed as the paper says); r = 96 as in the paper (the code's 192 via --set r=192)"
        + SAM_FRAME_NOTES
    ),
    revision=3,
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
    mamba_norm: bool,
    lora_rank: int,
    lora_gelu: bool,
    slice_scale: int,
    attention: str,
    vit: str,
    backbone_state: dict | None = None,
) -> nn.Module:
    plane_list = parse_planes(planes)

    def install(encoder: SamSliceEncoder) -> None:
        install_lora(encoder, lora_rank, lora_gelu)
        encoder.after_block = nn.ModuleList(
            TriPlaneMambaAdapter(encoder.embed_dim, r, plane_list, multiscale, kernel, encoder.context, d_state, mamba_norm)
            for _ in encoder.vit.blocks
        )

    return build_sam_adapted(in_channels, out_channels, roi_size, size, slice_scale, install, backbone_state, attention, vit)
