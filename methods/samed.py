"""SAMed (Zhang & Liu, 2023): LoRA of rank 4 on q and v of every block of a frozen SAM ViT-B.

In the paper's uniform framework SAMed takes the same 3D crops (slice by slice) and the same 3D
decoder as the other SAM methods, instead of SAM's 2D mask decoder at 512x512; only its adapter
(plain LoRA, no depth mixing) differs.
"""

from __future__ import annotations

from torch import nn

from methods.registry import register_method
from methods.sam_common import SAM_ADAPTER_FACTS, SAM_FRAME_NOTES, SamSliceEncoder, build_sam_adapted, install_lora


@register_method(
    "samed",
    **SAM_ADAPTER_FACTS,
    reference="Zhang & Liu, Customized Segment Anything Model for Medical Image Segmentation (SAMed), arXiv 2304.13785",
    paper=dict(lora_rank=4, slice_scale=1, attention="unpadded", vit="timm"),
    notes=(
        "LoRA checked against hitachinsk/SAMed sam_lora_image_encoder.py (rank 4 on q and v, no scaling); "
        "the shared 3D decoder (xmed-lab/TP-Mamba networks/sam/sam_decoder.py) on 3D crops replaces SAM's 2D mask decoder "
        "at 512x512 (uniform framework)" + SAM_FRAME_NOTES
    ),
    revision=3,
)
def build_samed(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    size: str,
    lora_rank: int,
    slice_scale: int,
    attention: str,
    vit: str,
    backbone_state: dict | None = None,
) -> nn.Module:

    def install(encoder: SamSliceEncoder) -> None:
        install_lora(encoder, lora_rank, gelu=False)

    return build_sam_adapted(in_channels, out_channels, roi_size, size, slice_scale, install, backbone_state, attention, vit)
