"""nnU-Net v2 as nnU-Net: its own pipeline (fingerprint, plan, preprocessing, trainer, predictor),
driven by the harness on each run's cases (``bench.pipelines.nnunet_steps``), with nnU-Net's default planner
or its residual-encoder presets (Isensee et al., nnU-Net Revisited, MICCAI 2024).

What a run trains is the network in nnU-Net's plan for the run's data; the builder here gives the
network nnU-Net's planners configure for a patch of the crop's size at a given spacing (isotropic
unless told), for parameter and MAC counts: the topology from nnunetv2's ``get_pool_and_conv_props``
(pooling an axis while its edge stays >= 4 voxels and its spacing is within 2x of the finest; 3-wide
kernels along an axis once its spacing is), features 32 doubling up to 320; the default planner's
``PlainConvUNet`` with two convolutions per stage, the ResEnc presets' ``ResidualEncoderUNet`` with
(1, 3, 4, 6, 6, 6) residual blocks per encoder stage and one convolution per decoder stage (ResEncM,
ResEncL and ResEncXL differ in the patch and batch their memory targets plan, 8, 24 and 40 GB, not
in the network at a given patch). bench list and bench flops count it at the plan for the default data
(``PLANNED_FOR_DEFAULT_DATA``).
"""

from __future__ import annotations

from torch import nn

from methods.registry import CountedInput

# nnU-Net's planner class per preset (nnunetv2.experiment_planning), and its plans identifier.
PLANNERS = {
    "default": ("ExperimentPlanner", "nnUNetPlans"),
    "ResEncM": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
    "ResEncL": ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
    "ResEncXL": ("nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans"),
}
_BASE_FEATURES, _MAX_FEATURES = 32, 320
_RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)

# nnU-Net's 3d_fullres plan (default planner, nnunetv2 2.8.1) for the default data, the built-in
# synthetic abdomen's original files: what bench list and bench flops count. Measured on draw 12pct/0
# by nnunetv2's extract_fingerprints and plan_experiments (the same plan is in a paper-profile run's
# config.json, provenance.pipeline); BTCV's own plan differs and is in the run files of a BTCV run.
PLANNED_FOR_DEFAULT_DATA = CountedInput(
    roi_size=(32, 224, 224),
    options={"spacing": (3.1, 0.861, 0.861)},
    what="nnU-Net's plan for the built-in synthetic abdomen: patch 32x224x224 at 3.1x0.861x0.861 mm (z, y, x)",
)


# What the registry knows of nnU-Net v2 as a method. Its registration pairs these with the pipeline
# that runs it, which reads files and so lives in the harness (bench.pipelines.nnunetv2, loaded
# through this distribution's own entry point like any method that brings a pipeline).
NNUNET_V2_FACTS = dict(
    family="own pipeline",
    title="nnU-Net v2, own pipeline",
    reference="Isensee et al., nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation, "
    "Nat. Methods 2021; nnU-Net Revisited, MICCAI 2024 (ResEnc presets)",
    # mirroring=false is nnU-Net's `nnUNetv2_predict --disable_tta`: 8x fewer forwards, a little less accurate.
    paper=dict(planner="default", configuration="3d_fullres", epochs=1000, iterations_per_epoch=250, mirroring=True),
    # CPU-sized: the same pipeline on the smoke profile's coarse volumes, few short epochs.
    smoke=dict(epochs=6, iterations_per_epoch=20),
    size_multiple=16,
    counted_input=PLANNED_FOR_DEFAULT_DATA,
    weights="random init (trained from scratch by nnU-Net's trainer)",
    compute_reference=True,
    notes=(
        "checked against MIC-DKFZ/nnUNet nnunetv2/experiment_planning/experiment_planners/{default_experiment_planner.py, "
        "network_topology.py, residual_unets/residual_encoder_unet_planners.py} for the counted network; "
        "nnU-Net v2's own pipeline on each run's training cases (fold 'all') through nnunetv2's Python API: its "
        "fingerprint, plan, preprocessing, trainer (SGD, poly schedule, deep supervision, its augmentation) and "
        "predictor (test-time mirroring); scored by bench in the original label space. --set planner=ResEncM|ResEncL|ResEncXL "
        "for the residual-encoder presets; --set mirroring=false predicts without test-time mirroring (nnU-Net's "
        "--disable_tta). Smoke profile: the raw data handed to nnU-Net are the profile's "
        "preprocessed volumes (8 mm, HU window scaled to [0, 1]), training runs without background workers"
    ),
)


def build_nnunetv2(
    in_channels: int,
    out_channels: int,
    roi_size: tuple[int, int, int],
    planner: str,
    configuration: str,
    epochs: int,
    iterations_per_epoch: int,
    mirroring: bool,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    if planner not in PLANNERS:
        raise ValueError(f"planner must be one of {', '.join(PLANNERS)}, got {planner!r}")
    if configuration != "3d_fullres":
        raise ValueError(f"only nnU-Net's 3d_fullres configuration is run here, got {configuration!r}")
    if epochs < 1 or iterations_per_epoch < 1:
        raise ValueError(f"epochs and iterations_per_epoch must be positive, got {epochs} and {iterations_per_epoch}")
    _, strides, kernels, _, _ = get_pool_and_conv_props(tuple(spacing), tuple(roi_size), 4, 999999)
    stages = len(kernels)
    common = dict(
        input_channels=in_channels,
        n_stages=stages,
        features_per_stage=[min(_MAX_FEATURES, _BASE_FEATURES * 2**i) for i in range(stages)],
        conv_op=nn.Conv3d,
        kernel_sizes=kernels,
        strides=strides,
        num_classes=out_channels,
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
    if planner == "default":
        network = PlainConvUNet(**common, n_conv_per_stage=[2] * stages, n_conv_per_stage_decoder=[2] * (stages - 1))
    else:
        network = ResidualEncoderUNet(
            **common, n_blocks_per_stage=list(_RESENC_BLOCKS[:stages]), n_conv_per_stage_decoder=[1] * (stages - 1)
        )
    network.apply(InitWeights_He(1e-2))
    return network
