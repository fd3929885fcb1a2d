"""nnU-Net (Isensee et al., Nature Methods 2021): the plain 3D U-Net that nnU-Net v2 plans for a
96^3 isotropic patch, built with dynamic-network-architectures' ``PlainConvUNet``.

Plan for 96^3 at 1 mm: 5 stages of 32, 64, 128, 256, 320 features, strides 1, 2, 2, 2, 2, 3^3
kernels, two convolutions per stage, instance norm, leaky ReLU. Only the network is nnU-Net's: in
the uniform framework it gets the shared preprocessing, DiceCE loss, AdamW schedule and
augmentation, and no deep supervision, instead of nnU-Net's own pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from methods.registry import register_method


@register_method(
    "nnunet",
    family="3d-net",
    reference="Isensee et al., nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation, Nat. Methods 2021",
    paper=dict(features=(32, 64, 128, 256, 320), convs_per_stage=2, decoder_convs_per_stage=2),
    smoke=dict(features=(8, 16, 32, 64, 64)),
    size_multiple=16,
    notes="nnU-Net's 96^3 network only: shared pipeline, no deep supervision, not nnU-Net's own training",
)
def build_nnunet(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    features: Sequence[int],
    convs_per_stage: int,
    decoder_convs_per_stage: int,
) -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    stages = len(features)
    return PlainConvUNet(
        input_channels=in_channels,
        n_stages=stages,
        features_per_stage=list(features),
        conv_op=nn.Conv3d,
        kernel_sizes=[[3, 3, 3]] * stages,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
        n_conv_per_stage=[convs_per_stage] * stages,
        num_classes=out_channels,
        n_conv_per_stage_decoder=[decoder_convs_per_stage] * (stages - 1),
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
