from __future__ import annotations

import pytest
import torch

from methods import count_parameters, create_model
from methods.masam import DepthAdapter3D
from methods.registry import build_on_meta
from methods.sam_common import LoRAQKV, SamSliceEncoder, build_sam_vit
from methods.tpmamba import PLANES, TriPlaneMambaAdapter, from_plane, to_plane
from tests.conftest import built_in_methods

SAM_METHODS = [info.name for info in built_in_methods() if info.family == "sam-adapter"]  # from the registry


@pytest.mark.parametrize("name", SAM_METHODS)
def test_forward_shape_and_frozen_backbone(name):
    model = create_model(name, size="smoke", roi_size=(32, 32, 32))
    out = model(torch.rand(2, 1, 32, 32, 32))
    assert out.shape == (2, 14, 32, 32, 32)
    out.mean().backward()
    vit_params = dict(model.encoder.vit.named_parameters())
    frozen = {name.removeprefix("encoder.vit.") for name in model.frozen_names}
    assert frozen and all(not vit_params[n].requires_grad and vit_params[n].grad is None for n in frozen)
    assert any(p.grad is not None for p in model.decoder.parameters())


def test_samed_lora_is_exactly_147456_parameters():
    model = build_on_meta("samed", size="paper", roi_size=(96, 96, 96))
    lora = sum(p.numel() for m in model.modules() if isinstance(m, LoRAQKV) for n, p in m.named_parameters() if n.startswith("lora_"))
    assert lora == 147_456


def test_masam_adapters_are_exactly_24818688_parameters():
    model = build_on_meta("masam", size="paper", roi_size=(96, 96, 96))
    adapters = [m for m in model.modules() if isinstance(m, DepthAdapter3D)]
    assert len(adapters) == 24
    assert sum(p.numel() for a in adapters for p in a.parameters()) == 24_818_688


def test_paper_size_backbone_is_sam_vit_b():
    vit = build_sam_vit("paper")
    assert len(vit.blocks) == 12 and vit.embed_dim == 768
    assert [i for i, b in enumerate(vit.blocks) if b.window_size == 0] == [2, 5, 8, 11]
    total, trainable = count_parameters(build_on_meta("tpmamba", size="paper", roi_size=(96, 96, 96)))
    assert total - trainable == sum(p.numel() for p in vit.parameters())


@pytest.mark.parametrize(("name", "overrides"), [("tpmamba", {}), ("samed", {}), ("masam", {"zero_init_adapters": True})])
def test_adapters_leave_sam_features_unchanged_at_init(name, overrides):
    torch.manual_seed(0)
    model = create_model(name, size="smoke", roi_size=(32, 32, 32), **overrides).eval()
    torch.manual_seed(0)
    plain = SamSliceEncoder(build_sam_vit("smoke"), out_blocks=model.encoder.out_blocks).eval()
    volume = torch.rand(1, 1, 32, 32, 8)
    with torch.no_grad():
        for adapted, reference in zip(model.encoder(volume), plain(volume), strict=True):
            torch.testing.assert_close(adapted, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("plane", PLANES)
def test_plane_reshapes_round_trip_exactly(plane):
    volume = torch.randn(2, 5, 7, 3, 4)  # (B, r, D, h, w)
    sequences = to_plane(volume, plane)
    expected_shape = {"hw": (2 * 7, 3 * 4, 5), "dh": (2 * 4, 7 * 3, 5), "dw": (2 * 3, 7 * 4, 5)}[plane]
    assert sequences.shape == expected_shape
    assert torch.equal(from_plane(sequences, plane, volume.shape), volume)


def test_dh_plane_sequences_run_through_depth():
    volume = torch.zeros(1, 1, 4, 2, 3)
    volume[0, 0, :, 1, 2] = torch.arange(4.0)  # a line along depth at h=1, w=2
    sequence = to_plane(volume, "dh")[2, :, 0]  # the sequence of column w=2
    assert sequence[1::2].tolist() == [0.0, 1.0, 2.0, 3.0]  # order (d, h): every second token is h=1


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.05)


@pytest.mark.parametrize(("name", "crosses_slices"), [("tpmamba", True), ("masam", True), ("samed", False)])
def test_depth_information_flows_only_through_3d_adapters(name, crosses_slices):
    """An encoder feature on slice 3 gets gradient from other slices only when adapters mix depth."""
    torch.manual_seed(0)
    model = create_model(name, size="smoke", roi_size=(32, 32, 32))
    for module in model.modules():  # trained adapters, not the identity they start as
        if isinstance(module, TriPlaneMambaAdapter | DepthAdapter3D):
            _randomise(module.up)
    volume = torch.rand(1, 1, 32, 32, 8, requires_grad=True)
    features = model.encoder(volume)[-1]  # (D, h, w, C)
    features[3].sum().backward()
    grad = volume.grad[0, 0].abs().sum(dim=(0, 1))  # per slice
    assert grad[3] > 0
    other = torch.cat([grad[:3], grad[4:]]).sum()
    assert (other > 0) == crosses_slices


def test_tpmamba_ablation_options_reach_the_adapter():
    model = create_model("tpmamba", size="smoke", roi_size=(32, 32, 32), planes="dw", multiscale=False, kernel=5, r=48)
    adapter = model.encoder.after_block[0]
    assert adapter.planes == ("dw",) and len(adapter.local) == 1 and adapter.local[0][0].kernel_size == (5, 1, 1)
    assert adapter.down[0].out_channels == 48
    with pytest.raises(ValueError, match="planes must be"):
        create_model("tpmamba", size="smoke", roi_size=(32, 32, 32), planes="xy")
