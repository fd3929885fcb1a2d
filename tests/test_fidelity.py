"""Each method against its original: what a parameter count cannot see (layer types, kernels,
strides, norms, activations, initialisation, token order), checked on the built models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from methods import count_parameters, create_model, get_method
from methods.mamba import Mamba
from methods.registry import build_on_meta
from methods.sam_common import build_sam_vit
from methods.sam_decoder import InPlaneUpStage, SliceDecoder3D
from methods.tpmamba import PLANES, PlaneMamba, TriPlaneMambaAdapter, to_plane
from tests.conftest import built_in_methods


def he_std(weight: torch.Tensor, negative_slope: float) -> float:
    fan_in = weight[0].numel()
    return math.sqrt(2.0 / ((1 + negative_slope**2) * fan_in))


# --- 1. the shared SAM decoder = the TP-Mamba authors' SAM_Decoder ---------------------------------


def authors_stage(in_channels: int, out_channels: int) -> nn.Module:
    """The authors' Conv3D_UP stage, assembled from the MONAI blocks they use (an independent build)."""
    from monai.networks.blocks import Convolution, ResidualUnit

    return nn.Sequential(
        Convolution(3, in_channels, out_channels, strides=(2, 2, 1), kernel_size=3, act="gelu", is_transposed=True, adn_ordering="NDA"),
        ResidualUnit(3, out_channels, out_channels, strides=1, kernel_size=3, subunits=1, act="gelu", adn_ordering="NDA"),
    )


def test_decoder_stage_computes_what_the_authors_monai_blocks_compute():
    torch.manual_seed(0)
    ours, theirs = InPlaneUpStage(12, 8), authors_stage(12, 8)
    ours_params = [p for p in ours.parameters()]
    theirs_params = [p for p in theirs.parameters()]
    assert [p.shape for p in ours_params] == [p.shape for p in theirs_params]
    with torch.no_grad():
        for mine, other in zip(ours_params, theirs_params, strict=True):
            mine.copy_(torch.randn_like(mine) * 0.1)
            other.copy_(mine)
    x = torch.randn(2, 12, 3, 3, 5)
    out = ours(x)
    assert out.shape == (2, 8, 6, 6, 5)  # in-plane x2, depth kept
    torch.testing.assert_close(out, theirs(x), rtol=1e-5, atol=1e-5)


def test_paper_decoder_has_the_authors_layers_and_count():
    from monai.networks.blocks.dynunet_block import UnetResBlock

    decoder = SliceDecoder3D(768, 4, 14, upsample_steps=4)  # 96^3 crop, 6x6 tokens per slice
    assert sum(p.numel() for p in decoder.parameters()) == 6_985_486
    stages = [m for m in decoder.modules() if isinstance(m, InPlaneUpStage)]
    assert len(stages) == 4 + 3  # one per block feature, then x2 steps 12 -> 24 -> 48 -> 96
    for stage in stages:
        assert isinstance(stage.up, nn.ConvTranspose3d) and stage.up.kernel_size == (3, 3, 3) and stage.up.stride == (2, 2, 1)
        assert stage.refine.kernel_size == (3, 3, 3)
        assert not stage.up_norm.affine and not stage.refine_norm.affine
        assert isinstance(stage.act, nn.GELU)
    assert isinstance(decoder.fuse, UnetResBlock) and isinstance(decoder.fuse.lrelu, nn.GELU)
    assert decoder.fuse.conv1.conv.in_channels == 256 and decoder.fuse.conv1.conv.out_channels == 64
    assert isinstance(decoder.fuse.norm1, nn.InstanceNorm3d)
    assert decoder.head.kernel_size == (1, 1, 1) and decoder.head.out_channels == 14


class DecoderOnFeatures(nn.Module):
    def __init__(self, decoder: SliceDecoder3D, depth: int):
        super().__init__()
        self.decoder, self.depth = decoder, depth

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        return self.decoder(list(features), depth=self.depth)


def test_decoder_macs_are_its_convolutions():
    """fvcore's count equals the convolutions' multiply-adds worked out by hand (norms add ~1 %)."""
    from bench.costs.flops import count_macs

    embed, width, tokens, depth, steps, classes = 48, 16, 3, 5, 2, 14
    decoder = SliceDecoder3D(embed, 4, classes, steps, width=width)
    count = count_macs(DecoderOnFeatures(decoder, depth), *[torch.rand(depth, tokens, tokens, embed)] * 4)

    def voxels(step: int) -> int:
        return depth * (tokens * 2**step) ** 2

    k = 27
    branches = 4 * (voxels(0) * embed * width * k + voxels(1) * width * width * k)  # transposed conv counts input voxels
    fuse = voxels(1) * (4 * width * width * k + width * width * k + 4 * width * width)
    stages = sum(voxels(s) * width * width * k + voxels(s + 1) * width * width * k for s in range(1, steps))
    head = voxels(steps) * width * classes
    assert count.gmacs * 1e9 == pytest.approx(branches + fuse + stages + head, rel=0.02)


@pytest.mark.parametrize(("name", "trainable"), [("tpmamba", 17_445_646), ("samed", 7_132_942), ("masam", 31_877_902)])
def test_sam_methods_count_the_authors_decoder_and_no_neck(name, trainable):
    model = build_on_meta(name, size="paper", roi_size=(96, 96, 96))
    total, counted = count_parameters(model)
    assert counted == trainable
    assert total - counted == 88_883_456  # the ViT-B without its never-called neck
    assert isinstance(model.encoder.vit.neck, nn.Identity)
    assert not any(".neck." in n for n, _ in model.named_parameters())


def test_sam_vit_keeps_every_block_but_not_the_neck():
    vit = build_sam_vit("paper")
    assert len(vit.blocks) == 12 and isinstance(vit.neck, nn.Identity)


# --- 2. TP-Mamba's adapter: the released code's details ----------------------------------------------


def test_tpmamba_adapter_follows_adapter_msconv_and_the_design_code():
    torch.manual_seed(0)
    adapter = TriPlaneMambaAdapter(768, 96, PLANES, True, 3, context=None)
    assert sum(p.numel() for p in adapter.parameters()) == 675_072
    convs = [adapter.down[0], *(branch[0] for branch in adapter.local)]
    assert [c.dilation[0] for c in convs[1:]] == [1, 2, 4, 8]
    for conv in convs:
        assert conv.bias is None and conv.kernel_size == (3, 1, 1)
        assert conv.weight.std().item() == pytest.approx(he_std(conv.weight, 0.0), rel=0.05)  # Kaiming normal, fan in
    norms = [m for m in adapter.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert len(norms) == 5 and not any(n.affine for n in norms)
    assert adapter.up.bias is None and adapter.up.kernel_size == (3, 1, 1) and torch.count_nonzero(adapter.up.weight) == 0
    for plane in PLANES:
        post = adapter.mamba[plane].post
        assert isinstance(post[0], nn.LayerNorm) and post[0].normalized_shape == (96,) and isinstance(post[1], nn.GELU)


def test_tpmamba_kernel_option_sets_down_branch_and_up_alike():
    adapter = TriPlaneMambaAdapter(64, 16, PLANES, True, 5, context=None)
    convs = [adapter.down[0], *(b[0] for b in adapter.local), adapter.up]
    assert all(c.kernel_size == (5, 1, 1) for c in convs)
    assert [c.padding[0] for c in convs] == [2, 2, 4, 8, 16, 2]  # 'same' for each dilation


def test_tpmamba_mamba_norm_can_be_switched_off():
    model = create_model("tpmamba", size="smoke", roi_size=(32, 32, 32), mamba_norm=False)
    plane = model.encoder.after_block[0].mamba["hw"]
    assert isinstance(plane, PlaneMamba) and isinstance(plane.post, nn.Identity)


def test_volume_flattening_scans_the_crop_depth_major():
    volume = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 1, 2, 3, 4)  # (B, r, D, h, w), value = d*12 + h*4 + w
    sequence = to_plane(volume, "volume")
    assert sequence.shape == (1, 24, 1)
    assert sequence[0, :, 0].tolist() == list(range(24))  # w fastest, then h, depth slowest
    model = create_model("tpmamba", size="smoke", roi_size=(32, 32, 32), planes="volume")
    adapter = model.encoder.after_block[0]
    assert adapter.planes == ("volume",)
    out = model(torch.rand(1, 1, 32, 32, 8))
    assert out.shape == (1, 14, 32, 32, 8)


def test_tpmamba_r_192_is_the_released_width():
    model = build_on_meta("tpmamba", size="paper", roi_size=(96, 96, 96), r=192)
    assert model.encoder.after_block[0].down[0].out_channels == 192


@pytest.mark.parametrize("name", ["tpmamba", "umamba"])
def test_mamba_state_matrix_and_skip_get_no_weight_decay(name):
    from bench.pipelines.training import optimizer_groups

    torch.manual_seed(0)
    model = create_model(name, size="smoke", roi_size=(32, 32, 32))
    mambas = [m for m in model.modules() if isinstance(m, Mamba)]
    decayed, exempt = optimizer_groups(model, weight_decay=0.5)
    assert decayed["weight_decay"] == 0.5 and exempt["weight_decay"] == 0.0
    expected = {id(p) for m in mambas for p in (m.A_log, m.D)}
    assert {id(p) for p in exempt["params"]} == expected and len(expected) == 2 * len(mambas)
    # One AdamW step with zero gradients: only decay moves the weights.
    optimizer = torch.optim.AdamW([decayed, exempt], lr=0.1)
    for group in (decayed, exempt):
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    a_log = mambas[0].A_log.detach().clone()
    weight = mambas[0].in_proj.weight.detach().clone()
    optimizer.step()
    assert torch.equal(mambas[0].A_log, a_log)
    torch.testing.assert_close(mambas[0].in_proj.weight, weight * (1 - 0.1 * 0.5))


def test_networks_without_marks_keep_one_optimizer_group():
    from bench.pipelines.training import optimizer_groups

    assert len(optimizer_groups(create_model("unetr", size="smoke", roi_size=(32, 32, 32)), 1e-5)) == 1


# --- 3. TransBTS: GroupNorm(8) in the encoder ----------------------------------------------------------


def test_transbts_encoder_normalises_with_groupnorm_8():
    model = build_on_meta("transbts", size="paper", roi_size=(96, 96, 96))
    encoder = nn.ModuleList([model.enc1, model.enc2, model.enc3, model.enc4])
    norms = [m for m in encoder.modules() if isinstance(m, nn.GroupNorm | nn.BatchNorm3d)]
    assert len(norms) == 18 and all(isinstance(n, nn.GroupNorm) and n.num_groups == 8 for n in norms)
    assert isinstance(model.embed[0], nn.BatchNorm3d)  # the original's bn before conv_x stays batch norm
    assert "dropout3d" in get_method("transbts").notes


def test_transbts_attention_drops_twice_in_series_and_keeps_linear_init_for_qkv():
    """The original's attention branch: SelfAttention's proj_drop (attention rate), then PreNormDrop's
    dropout (layer rate); qkv an nn.Linear(dim, 3 * dim) with PyTorch's default initialisation."""
    from methods.transbts import TransformerLayer

    torch.manual_seed(0)
    layer = TransformerLayer(512, 8, 64, dropout=0.1, attn_dropout=0.1)
    assert [m.p for m in layer.drop.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.1]
    layer.train()
    dropped = float((layer.drop(torch.ones(200_000)) == 0).float().mean())
    assert dropped == pytest.approx(1 - 0.9 * 0.9, abs=0.005)  # 0.19, not one dropout's 0.1
    weight, reference = layer.attn.in_proj_weight, nn.Linear(512, 3 * 512, bias=False).weight
    bound = 1 / math.sqrt(512)  # nn.Linear's kaiming-uniform(a=sqrt 5) bound; xavier's would be sqrt(6 / 2048) = 0.054
    weight, reference = weight.detach(), reference.detach()
    assert 0.99 * bound < float(weight.abs().max()) <= bound
    assert float(weight.std()) == pytest.approx(float(reference.std()), rel=0.02)


def test_masam_adapters_normalise_with_sams_eps():
    """MA-SAM builds every norm of a block, the adapters' included, as partial(nn.LayerNorm, eps=1e-6)."""
    model = build_on_meta("masam", size="smoke", roi_size=(32, 32, 32))
    adapter_norms = [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.LayerNorm) and name.endswith(("before_attention.norm", "before_mlp.norm"))
    ]
    assert len(adapter_norms) == 2 * 4 and all(n.eps == 1e-6 for n in adapter_norms)  # two per block of the smoke ViT


# --- 4. nnU-Net family: He initialisation and optional deep supervision --------------------------------


def test_nnunet_gets_nnunets_he_initialisation():
    model = create_model("nnunet", size="paper", roi_size=(96, 96, 96))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)]
    assert convs and all(torch.count_nonzero(c.bias) == 0 for c in convs if c.bias is not None)
    large = [c for c in convs if c.weight.numel() > 100_000]
    for conv in large:
        fan_in = conv.weight.shape[1] * conv.weight[0, 0].numel()
        expected = math.sqrt(2.0 / ((1 + 0.01**2) * fan_in))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.03)
    assert "not nnU-Net's own pipeline" in get_method("nnunet").notes


def test_deep_supervision_weights_are_nnunets():
    from bench.pipelines.losses import deep_supervision_weights

    assert deep_supervision_weights(4) == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0])
    assert deep_supervision_weights(1) == [1.0]


@pytest.mark.parametrize("name", ["nnunet", "umamba", "mednext"])
def test_deep_supervision_outputs_in_training_only(name):
    torch.manual_seed(0)
    plain = create_model(name, size="smoke", roi_size=(32, 32, 32))
    supervised = create_model(name, size="smoke", roi_size=(32, 32, 32), deep_supervision=True)
    x = torch.rand(2, 1, 32, 32, 32)
    assert isinstance(plain(x), torch.Tensor)  # off by default, as the paper's uniform framework
    outputs = supervised.train()(x)
    assert isinstance(outputs, list | tuple) and len(outputs) >= 3
    assert [o.shape[2] for o in outputs] == [32 // 2**i for i in range(len(outputs))]
    with torch.no_grad():
        assert supervised.eval()(x).shape == (2, 14, 32, 32, 32)


def test_supervised_loss_weights_each_output_against_nearest_downsampled_labels():
    from monai.losses import DiceCELoss

    from bench.pipelines.losses import supervised_loss

    torch.manual_seed(0)
    label = torch.randint(0, 3, (1, 1, 8, 8, 8)).float()
    outputs = [torch.randn(1, 3, 8, 8, 8, requires_grad=True), torch.randn(1, 3, 4, 4, 4, requires_grad=True)]
    outputs.append(torch.randn(1, 3, 2, 2, 2, requires_grad=True))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    loss = supervised_loss(loss_fn, outputs, label)
    half = torch.nn.functional.interpolate(label, size=(4, 4, 4), mode="nearest-exact")
    expected = (2 / 3) * loss_fn(outputs[0], label) + (1 / 3) * loss_fn(outputs[1], half)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert outputs[2].grad is None  # the lowest resolution has weight 0, as in nnU-Net


# --- 5. smaller points -----------------------------------------------------------------------------------


def test_umamba_scans_voxels_in_nnunets_order():
    from methods.umamba import MambaLayer

    layer = MambaLayer(1)
    seen = []
    layer.norm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x_index = torch.arange(3.0).reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2)  # value = x coordinate
    z_index = torch.arange(2.0).reshape(1, 1, 1, 1, 2).expand(1, 1, 3, 2, 2)
    layer(x_index)
    assert seen[0][0, :6, 0].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]  # x fastest
    layer(z_index)
    assert seen[1][0, :, 0].tolist() == [0.0] * 6 + [1.0] * 6  # z slowest


def test_umamba_builds_a_head_per_decoder_stage_like_the_original():
    model = build_on_meta("umamba", size="paper", roi_size=(96, 96, 96))
    assert [h.in_channels for h in model.heads] == [256, 128, 64, 32]
    assert count_parameters(model)[0] / 1e6 == pytest.approx(22.58, abs=0.005)  # U-Mamba Bot as published


def test_vnet_is_elu_as_monai_builds_it():
    model = create_model("vnet", size="smoke", roi_size=(32, 32, 32))
    kinds = {type(m) for m in model.modules()}
    assert nn.ELU in kinds and nn.PReLU not in kinds
    assert "ELU" in get_method("vnet").notes and "PReLU" in get_method("vnet").notes


def test_mednext_notes_state_the_factory_difference():
    notes = get_method("mednext").notes
    assert "10,511,246" in notes and "10,526,703" in notes
    assert count_parameters(build_on_meta("mednext", size="paper", roi_size=(96, 96, 96)))[0] == 10_511_246


def test_every_method_names_the_original_files_it_was_checked_against():
    for info in built_in_methods():
        if info.name.startswith("_"):
            continue
        assert ".py" in info.notes and "/" in info.notes, info.name
