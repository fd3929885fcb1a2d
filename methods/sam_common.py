"""What the three SAM-adapter methods share: a frozen SAM ViT run on the axial slices of a volume,
LoRA on its attention, and the 3D decoder of the TP-Mamba authors' code.

In the paper's uniform framework TP-Mamba, SAMed and MA-SAM all take the same 3D crops and use
the same decoder, so only their adapters differ; this module is that common frame.

Layout: volumes are ``(B, 1, X, Y, Z)`` as everywhere in the harness (MONAI's channel-first,
Z = the axial/depth axis). The encoder sees ``B*Z`` slices of ``X x Y`` and its tokens are
``(B*Z, h, w, C)`` with ``h = X / patch``, ``w = Y / patch`` (timm's NHWC); adapters that mix
depth view them as ``(B, C, D, h, w)`` with ``D = Z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed_nhwc
from torch import nn

from methods.registry import BackboneSpec
from methods.sam_decoder import DECODER_WIDTH, SliceDecoder3D
from methods.sam_windows import SamBlock, set_attention

# CPU profile: SAM's structure (windowed and global blocks, relative positions) at toy size. Its
# window of 3 does not divide the 4 x 4 tokens of a 32^3 crop, so, as ViT-B's 14 and 6 x 6 tokens at
# 96^3, its windowed blocks meet padding (partial edge windows).
SMOKE_VIT = dict(patch_size=8, embed_dim=96, depth=4, num_heads=3, global_attn_indexes=(1, 3), window_size=3, img_size=64)

# Two numerics of the same ViT-B weights (``vit=`` of every SAM method). "timm": timm's samvit, which
# the TP-Mamba authors' uniform framework runs (xmed-lab/TP-Mamba networks/sam/sam_base.py):
# LayerNorm eps 1e-5, the 64 x 64 absolute position embedding resized bicubic with antialiasing to
# the token grid. "segment_anything": SAM's own image encoder as SAMed and MA-SAM build it
# (MA-SAM/segment_anything/build_sam.py): eps 1e-6, resized bilinear without antialiasing (its
# load_from). Both resize the relative position tables of the global blocks linearly (at load there,
# at each forward here: the same numbers).
VIT_NUMERICS = {
    "timm": dict(eps=1e-5, mode="bicubic", antialias=True),
    "segment_anything": dict(eps=1e-6, mode="bilinear", antialias=False),
}


class LoRAQKV(nn.Module):
    """Low-rank update of the q and v parts of a frozen fused qkv projection.

    ``qkv(x) + [B_q act(A_q x), 0, B_v act(A_v x)]`` on tokens ``(..., C) -> (..., 3C)``. B starts at
    zero, so the wrapped layer starts equal to the frozen one. SAMed: rank 4, no activation; the
    TP-Mamba authors' code: rank 64 with a GELU between A and B. No scaling in either.
    """

    def __init__(self, qkv: nn.Linear, rank: int, gelu: bool = False):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        dim = qkv.in_features
        if qkv.out_features != 3 * dim:
            raise ValueError(f"expected a fused qkv projection {dim} -> {3 * dim}, got {qkv.out_features}")
        self.base = qkv
        self.dim = dim
        self.lora_q_a = nn.Linear(dim, rank, bias=False)
        self.lora_q_b = nn.Linear(rank, dim, bias=False)
        self.lora_v_a = nn.Linear(dim, rank, bias=False)
        self.lora_v_b = nn.Linear(rank, dim, bias=False)
        self.act = nn.GELU() if gelu else nn.Identity()
        for a in (self.lora_q_a, self.lora_v_a):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        for b in (self.lora_q_b, self.lora_v_b):
            nn.init.zeros_(b.weight)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.lora_q_b(self.act(self.lora_q_a(x)))
        v = self.lora_v_b(self.act(self.lora_v_a(x)))
        return self.base(x) + torch.cat([q, torch.zeros_like(q), v], dim=-1)


@dataclass
class SliceContext:
    """The depth of the volume being encoded, read by adapters that reshape tokens to 3D."""

    depth: int = 1


def build_sam_vit(
    size: str, backbone_state: dict[str, torch.Tensor] | None = None, attention: str = "unpadded", vit: str = "timm"
) -> nn.Module:
    """timm's SAM ViT without its neck: ViT-B for "paper", a toy of the same structure for "smoke",
    with the LayerNorm eps of ``vit`` (:data:`VIT_NUMERICS`).

    Its blocks are ``methods.sam_windows.SamBlock`` (timm's block, same parameters): windowed
    attention without padding tokens, exactly equal to timm's (``attention="unpadded"``), or timm's
    own computation (``"padded"``).

    The neck (SAM's 768 -> 256 channel reduction for its mask decoder, 787,456 parameters in ViT-B)
    is replaced by an identity, as the TP-Mamba authors do: the 3D decoder reads block outputs, so
    the neck never runs and a frozen copy of it would only inflate the parameter count.

    ``backbone_state`` is a state dict in Meta's original SAM format (``image_encoder.*``, the mask
    decoder and prompt encoder are dropped) or timm's; timm's own ``checkpoint_filter_fn`` maps it
    and the neck's weights are dropped. Without it the weights are random.
    """
    import timm
    from timm.models.vision_transformer_sam import VisionTransformerSAM, checkpoint_filter_fn

    if vit not in VIT_NUMERICS:
        raise ValueError(f"vit must be one of {', '.join(VIT_NUMERICS)}, got {vit!r}")
    if size == "paper":
        model = timm.create_model("samvit_base_patch16", pretrained=False, num_classes=0, block_fn=SamBlock)
    else:
        model = VisionTransformerSAM(**SMOKE_VIT, use_rel_pos=True, num_classes=0, neck_chans=None, block_fn=SamBlock)
    set_attention(model, attention)
    model.neck = nn.Identity()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = VIT_NUMERICS[vit]["eps"]
    if backbone_state is not None:
        state = {k: v for k, v in checkpoint_filter_fn(backbone_state, model).items() if not k.startswith("neck.")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"SAM weights do not fit the {size} ViT: {str(exc).splitlines()[-1].strip()}") from None
        if missing or unexpected:
            raise ValueError(
                f"SAM weights do not fit the {size} ViT: {len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
            )
    return model


class SamSliceEncoder(nn.Module):
    """A SAM ViT applied to every axial slice; returns the tokens after each of its last blocks.

    Input ``(B, 1, X, Y, Z)`` in [0, 1]; the CT channel is repeated to SAM's three (no ImageNet
    normalisation, as in the authors' code) and with ``slice_scale=2`` slices are upsampled x2
    first (their ablation code). Output: ``len(out_blocks)`` tensors ``(B*Z, h, w, C)``.
    ``after_block[i]`` (identity unless an adapter is installed) runs after block i. The position
    embedding is resized to the token grid as ``vit_numerics`` says (:data:`VIT_NUMERICS`), once per
    grid while it is frozen and unchanged, not at every forward.
    """

    def __init__(self, vit: nn.Module, out_blocks: Sequence[int], slice_scale: int = 1, vit_numerics: str = "timm"):
        super().__init__()
        if slice_scale not in (1, 2):
            raise ValueError(f"slice_scale must be 1 (native) or 2 (x2 upsampled), got {slice_scale}")
        if vit_numerics not in VIT_NUMERICS:
            raise ValueError(f"vit must be one of {', '.join(VIT_NUMERICS)}, got {vit_numerics!r}")
        self.vit = vit
        self.out_blocks = tuple(out_blocks)
        self.slice_scale = slice_scale
        self.vit_numerics = vit_numerics
        self.context = SliceContext()
        self.after_block = nn.ModuleList(nn.Identity() for _ in vit.blocks)
        self._resized: tuple[tuple, torch.Tensor] | None = None  # (what it was computed from, the embedding)

    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

    @property
    def patch_size(self) -> int:
        return self.vit.patch_embed.patch_size[0]

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The absolute position embedding ``(1, h, w, C)`` on a token grid of ``grid``."""
        pos = self.vit.pos_embed
        if tuple(grid) == tuple(pos.shape[1:3]):
            return pos
        if pos.requires_grad:  # trained: no cache, the gradient must reach it
            return self._resize(pos, grid)
        key = (tuple(grid), pos.device, pos.dtype, pos.data_ptr(), pos._version)  # _version: load_state_dict writes in place
        if self._resized is None or self._resized[0] != key:
            with torch.no_grad():
                self._resized = (key, self._resize(pos, grid))
        return self._resized[1]

    def _resize(self, pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        numerics = VIT_NUMERICS[self.vit_numerics]
        return resample_abs_pos_embed_nhwc(pos, list(grid), interpolation=numerics["mode"], antialias=numerics["antialias"])

    def forward(self, volume: torch.Tensor) -> list[torch.Tensor]:
        b, c, x, y, z = volume.shape
        if c != 1:
            raise ValueError(f"SAM encoder expects one CT channel, got {c}")
        slices = volume.permute(0, 4, 1, 2, 3).reshape(b * z, 1, x, y).expand(-1, 3, -1, -1)
        if self.slice_scale != 1:
            slices = F.interpolate(slices, scale_factor=self.slice_scale, mode="bilinear", align_corners=False)
        self.context.depth = z
        tokens = self.vit.patch_embed(slices)
        tokens = tokens + self.position_embedding(tokens.shape[1:3])
        features = []
        for index, (block, adapter) in enumerate(zip(self.vit.blocks, self.after_block, strict=True)):
            tokens = adapter(block(tokens))
            if index in self.out_blocks:
                features.append(tokens)
        return features


class SamAdapted3D(nn.Module):
    """Frozen SAM slice encoder + method-specific adapters + shared 3D decoder: (B, 1, X, Y, Z) -> logits."""

    def __init__(self, encoder: SamSliceEncoder, decoder: SliceDecoder3D, frozen_names: Sequence[str]):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.frozen_names = tuple(frozen_names)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        features = self.encoder(volume)
        return self.decoder(features, depth=volume.shape[-1])


def build_sam_adapted(
    in_channels: int,
    out_channels: int,
    roi_size: Sequence[int],
    size: str,
    slice_scale: int,
    install_adapters: Callable[[SamSliceEncoder], None],
    backbone_state: dict[str, torch.Tensor] | None = None,
    attention: str = "unpadded",
    vit: str = "timm",
) -> SamAdapted3D:
    """Assemble a SAM method: build (and load) the ViT with the numerics ``vit`` names, record its
    parameters as frozen, let the method install its adapters, then attach the decoder sized for the crop."""
    if in_channels != 1:
        raise ValueError(f"SAM methods take one CT channel, got {in_channels}")
    backbone = build_sam_vit(size, backbone_state, attention, vit)
    blocks = len(backbone.blocks)
    encoder = SamSliceEncoder(backbone, out_blocks=range(blocks - 4, blocks), slice_scale=slice_scale, vit_numerics=vit)
    frozen_ids = {id(p) for p in backbone.parameters()}
    install_adapters(encoder)
    tokens = roi_size[0] * slice_scale // encoder.patch_size
    if roi_size[0] != roi_size[1] or tokens * encoder.patch_size != roi_size[0] * slice_scale:
        raise ValueError(f"SAM methods need square slices divisible by the patch size {encoder.patch_size}; got {tuple(roi_size)}")
    steps = int(round(math.log2(roi_size[0] / tokens)))
    if 2**steps * tokens != roi_size[0]:
        raise ValueError(f"crop {roi_size[0]} is not a power-of-two multiple of the token grid {tokens}")
    decoder = SliceDecoder3D(encoder.embed_dim, len(encoder.out_blocks), out_channels, steps, width=DECODER_WIDTH[size])
    model = SamAdapted3D(encoder, decoder, frozen_names=())
    frozen = tuple(name for name, p in model.named_parameters() if id(p) in frozen_ids)
    model.frozen_names = frozen
    return model


def trainable_outside_backbone(model: SamAdapted3D) -> list[str]:
    """The trainable-parameter rule of all SAM methods: everything but the original ViT weights."""
    frozen = set(model.frozen_names)
    return [name for name, _ in model.named_parameters() if name not in frozen]


# What the three SAM methods register alike: their family, trainable rule, patch-size multiple
# (SAM's 16-pixel patches) and backbone weights.
SAM_VIT_B_WEIGHTS = BackboneSpec(
    name="SAM ViT-B image encoder",
    hub_repo="timm/samvit_base_patch16.sa1b",
    hub_file="model.safetensors",
    accepted_files="Meta's sam_vit_b_01ec64.pth or a timm samvit_base_patch16 weight file",
)
# What every SAM method's notes say about the shared frame (the ViT's numerics and attention).
SAM_FRAME_NOTES = (
    "; the frozen ViT computes as the uniform framework that produced the paper's SAM rows (xmed-lab/TP-Mamba "
    "networks/sam/sam_base.py: timm samvit, LayerNorm eps 1e-5, position embedding resized bicubic with antialiasing, "
    "here once per token grid); --set vit=segment_anything for SAM's own encoder as SAMed and MA-SAM build it "
    "(segment_anything build_sam.py: eps 1e-6, resized bilinear without antialiasing)"
    "; windowed attention runs without padding tokens, exactly (methods/sam_windows.py; --set attention=padded for timm's)"
)
SAM_ADAPTER_FACTS = dict(
    family="sam-adapter",
    trainable=trainable_outside_backbone,
    size_multiple=16,
    weights="SAM ViT-B image encoder (frozen)",
    backbone=SAM_VIT_B_WEIGHTS,
)


def install_lora(encoder: SamSliceEncoder, rank: int, gelu: bool) -> None:
    for block in encoder.vit.blocks:
        block.attn.qkv = LoRAQKV(block.attn.qkv, rank, gelu)
