"""nnU-Net (Isensee et al., Nature Methods 2021): the plain 3D U-Net that nnU-Net v2 plans for a
96^3 isotropic patch, built with dynamic-network-architectures' ``PlainConvUNet``.

Plan for 96^3 at 1 mm: 5 stages of 32, 64, 128, 256, 320 features, strides 1, 2, 2, 2, 2, 3^3
kernels, two convolutions per stage, instance norm, leaky ReLU, and nnU-Net's He initialisation
(``InitWeights_He(1e-2)``, as nnunetv2's ``get_network_from_plans`` applies it). Only the network is
nnU-Net's: in the uniform framework it gets the shared preprocessing, DiceCE loss, AdamW schedule
and augmentation instead of nnU-Net's own pipeline. Deep supervision is off by default, as in the
paper's framework; ``deep_supervision=True`` gives nnU-Net's (see ``bench.pipelines.losses.supervised_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

from dynamic_network_architectures.architectures.unet import PlainConvUNet
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from methods.registry import register_method


class TrainingDeepSupervisionUNet(PlainConvUNet):
    """``PlainConvUNet`` whose deep-supervision outputs exist in training mode only.

    dynamic-network-architectures returns the list of outputs (full resolution first) whenever its
    decoder's flag is set, and nnU-Net's trainer switches it off for inference; here ``train()`` and
    ``eval()`` switch it, so inference always gets the full-resolution logits.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs, deep_supervision=True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.decoder.deep_supervision = mode
        return self


@register_method(
    "nnunet",
    family="3d-net",
    title="nnU-Net architecture, uniform protocol",
    reference="Isensee et al., nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation, Nat. Methods 2021",
    paper=dict(features=(32, 64, 128, 256, 320), convs_per_stage=2, decoder_convs_per_stage=2, deep_supervision=False),
    smoke=dict(features=(8, 16, 32, 64, 64)),
    size_multiple=16,
    notes=(
        "nnU-Net architecture (96^3 plan) under the uniform protocol, not nnU-Net's own pipeline; "
        "checked against MIC-DKFZ/dynamic-network-architectures architectures/unet.py and nnunetv2 get_network_from_plans "
        "(InitWeights_He(1e-2)); no deep supervision by default (--set deep_supervision=true)"
    ),
    revision=2,
)
def build_nnunet(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    features: Sequence[int],
    convs_per_stage: int,
    decoder_convs_per_stage: int,
    deep_supervision: bool,
) -> nn.Module:
    stages = len(features)
    kwargs = dict(
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
    )
    network = TrainingDeepSupervisionUNet(**kwargs) if deep_supervision else PlainConvUNet(**kwargs, deep_supervision=False)
    network.apply(InitWeights_He(1e-2))
    return network
