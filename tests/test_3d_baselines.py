"""The 3D networks of Table 1 built from maintained libraries: counts, shapes, known pitfalls."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks.mednext_block import MedNeXtBlock

from methods import count_parameters, create_model, get_method
from methods.registry import build_on_meta

# Parameter counts of the reference implementations built at 96^3 with 14 classes and one input channel:
# dynamic-network-architectures' PlainConvUNet (nnU-Net's plan), MONAI's VNet and MedNeXt-B factory, and the
# official 3D UX-Net, U-Mamba Bot and TransBTS code; 3D UX-Net's and TransBTS's agree with 3D UX-Net's table.
PUBLISHED_PARAMS = {"nnunet": 16.55e6, "vnet": 45.65e6, "mednext": 10.51e6, "uxnet": 53.01e6, "umamba": 22.58e6, "transbts": 31.58e6}


@pytest.mark.parametrize(("name", "published"), PUBLISHED_PARAMS.items())
def test_paper_size_counts_within_one_percent(name, published):
    total, trainable = count_parameters(build_on_meta(name, size="paper", roi_size=(96, 96, 96)))
    assert total == trainable
    assert abs(total - published) / published < 0.01


def test_mednext_is_built_through_the_factories():
    """The bare MedNeXt class defaults to kernel 7 without residuals; the paper's variants are k3 + residual."""
    model = build_on_meta("mednext", size="paper", roi_size=(96, 96, 96))
    blocks = [m for m in model.modules() if type(m) is MedNeXtBlock]  # up/down blocks subclass it
    assert blocks and all(b.do_res for b in blocks)
    assert all(b.conv1.kernel_size == (3, 3, 3) for b in blocks)
    k5 = build_on_meta("mednext", size="paper", roi_size=(96, 96, 96), kernel_size=5)
    assert next(m for m in k5.modules() if isinstance(m, MedNeXtBlock)).conv1.kernel_size == (5, 5, 5)
    with pytest.raises(ValueError, match="variant must be"):
        create_model("mednext", variant="XL")


@pytest.mark.parametrize("name", ["nnunet", "mednext"])
def test_departures_from_the_original_recipe_are_stated(name):
    assert "deep supervision" in get_method(name).notes


def test_uxnet_blocks_are_large_kernel_depthwise_with_grouped_mlp():
    from methods.uxnet import LargeKernelBlock

    model = build_on_meta("uxnet", size="paper", roi_size=(96, 96, 96))
    blocks = [m for m in model.modules() if isinstance(m, LargeKernelBlock)]
    assert len(blocks) == 8
    for block in blocks:
        dim = block.dwconv.in_channels
        assert block.dwconv.kernel_size == (7, 7, 7) and block.dwconv.groups == dim
        assert block.pwconv1.groups == dim and block.pwconv2.groups == dim and block.pwconv1.out_channels == 4 * dim


def test_umamba_enc_count_and_channel_tokens_at_the_bottleneck():
    from methods.umamba import MambaLayer

    model = build_on_meta("umamba", size="paper", roi_size=(96, 96, 96), variant="enc")
    total, _ = count_parameters(model)
    assert abs(total - 22.82e6) / 22.82e6 < 0.01
    layers = [m for m in model.modules() if isinstance(m, MambaLayer)]
    assert len(layers) == 5
    assert layers[-1].channel_tokens and layers[-1].mamba.d_model == 6**3  # 6^3 voxels < 320 channels
    assert not any(layer.channel_tokens for layer in layers[:-1])


def test_umamba_mamba_runs_in_float32_under_autocast():
    from methods.umamba import MambaLayer

    model = create_model("umamba", size="smoke", roi_size=(32, 32, 32)).eval()
    seen = []
    layer = next(m for m in model.modules() if isinstance(m, MambaLayer))
    layer.mamba.in_proj.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 1, 32, 32, 32))
    assert seen == [(torch.float32, torch.float32)]
    assert out.shape == (1, 14, 32, 32, 32)


def test_transbts_dropout3d_is_off_in_eval_and_on_in_training():
    torch.manual_seed(0)
    model = create_model("transbts", size="smoke", roi_size=(32, 32, 32))
    x = torch.rand(2, 1, 32, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # the original keeps dropping channels here
    model.train()
    with torch.no_grad():
        assert not torch.equal(model.stem(x), model.stem(x))


def test_transbts_refuses_other_crops_with_a_clear_message():
    with pytest.raises(ValueError, match="defined for 96\\^3 crops only.*use --roi 96"):
        create_model("transbts", size="paper", roi_size=(64, 64, 64))
    model = build_on_meta("transbts", size="paper", roi_size=(96, 96, 96))
    assert model.position.shape == (1, 1728, 512)
