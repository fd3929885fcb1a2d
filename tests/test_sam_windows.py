"""SAM's windowed attention without padding tokens equals timm's padded computation: block by block
for ViT-B at 6x6, 12x12 and 20x20 tokens (a grid smaller than a window, the 2x slices, partial edge
windows), and for the three SAM methods with every adapter installed, outputs and gradients."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

from methods import create_model
from methods.sam_windows import SamBlock, set_attention


def randomised(module: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Every parameter non-zero (qkv biases, LoRA and FacT up-projections, zero-initialised adapters
    included), so a virtual key that forgot any of them would show."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)
    return module


@pytest.fixture(scope="module")
def vit_b_block():
    torch.manual_seed(0)
    vit = timm.create_model("samvit_base_patch16", pretrained=False, num_classes=0, block_fn=SamBlock)
    assert vit.blocks[0].window_size == 14 and vit.blocks[2].window_size == 0  # windowed and global blocks
    block = randomised(vit.blocks[0])
    with torch.no_grad():  # relative positions as large as trained ones: logits spread over tens
        block.attn.rel_pos_h.normal_(0, 1.0)
        block.attn.rel_pos_w.normal_(0, 1.0)
    return block


@pytest.mark.parametrize("tokens", [6, 12, 20])
def test_vit_b_block_equals_the_padded_block(vit_b_block, tokens):
    block64 = copy.deepcopy(vit_b_block).double()
    x = torch.randn(2, tokens, tokens, 768, dtype=torch.float64)
    block64.attention_mode = "padded"
    padded = block64(x)
    block64.attention_mode = "unpadded"
    assert torch.allclose(block64(x), padded, rtol=0, atol=1e-10)  # the same function, not an approximation
    # float32: the unpadded path is as close to the exact result as timm's own padded path
    x32 = x.float()
    errors = {}
    for mode in ("padded", "unpadded"):
        vit_b_block.attention_mode = mode
        errors[mode] = (vit_b_block(x32).double() - padded).abs().max().item()
    assert errors["unpadded"] <= 2 * errors["padded"] + 1e-6, errors


def test_a_grid_that_fills_its_windows_takes_no_virtual_key(vit_b_block):
    x = torch.randn(1, 14, 28, 768)
    vit_b_block.attention_mode = "padded"
    padded = vit_b_block(x)
    vit_b_block.attention_mode = "unpadded"
    assert torch.allclose(vit_b_block(x), padded, atol=1e-5)


@pytest.mark.parametrize("name", ["tpmamba", "samed", "masam"])
def test_sam_methods_with_adapters_give_the_padded_outputs_and_gradients(name):
    """Smoke size (window 3) at a 32^3 crop: 4x4 tokens per slice, so every row and column of
    windows ends in a partial one; float64, every adapter active."""
    torch.manual_seed(0)
    model = randomised(create_model(name, size="smoke", roi_size=(32, 32, 32))).double().eval()  # eval: no FacT dropout draws
    volume = torch.rand(1, 1, 32, 32, 4, dtype=torch.float64)
    results = {}
    for mode in ("padded", "unpadded"):
        set_attention(model, mode)
        model.zero_grad()
        features = model.encoder(volume)
        output = model(volume)
        (output.square().mean() + sum(f.square().mean() for f in features)).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        results[mode] = ([f.detach() for f in features], output.detach(), grads)
    (f_pad, out_pad, g_pad), (f_un, out_un, g_un) = results["padded"], results["unpadded"]
    for a, b in zip(f_pad, f_un, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)
    assert torch.allclose(out_pad, out_un, rtol=0, atol=1e-10)
    assert g_pad.keys() == g_un.keys() and len(g_pad) > 4
    for key in g_pad:
        assert torch.allclose(g_pad[key], g_un[key], rtol=1e-8, atol=1e-10), key


def test_attention_is_a_method_option():
    padded = create_model("samed", size="smoke", roi_size=(32, 32, 32), attention="padded")
    assert {b.attention_mode for b in padded.modules() if isinstance(b, SamBlock)} == {"padded"}
    default = create_model("samed", size="smoke", roi_size=(32, 32, 32))
    assert {b.attention_mode for b in default.modules() if isinstance(b, SamBlock)} == {"unpadded"}
    with pytest.raises(ValueError, match="attention must be one of"):
        create_model("samed", size="smoke", roi_size=(32, 32, 32), attention="sparse")
