"""The frozen ViT's two numerics (``vit=``) against the code each comes from, built beside ours with
the same weights: SAM's own image encoder (segment_anything, as SAMed and MA-SAM build it) and timm's
samvit run the way the TP-Mamba authors' uniform framework runs it; and the resized position
embedding computed once per token grid."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed_nhwc
from torch import nn

from methods.sam_common import SMOKE_VIT, SamSliceEncoder, build_sam_vit

CROP, DEPTH = 32, 2
GRID = CROP // SMOKE_VIT["patch_size"]


def sam_encoder(img_size: int) -> nn.Module:
    """segment_anything's ImageEncoderViT as its build_sam.py configures it, at the smoke ViT's size."""
    from segment_anything.modeling import ImageEncoderViT

    v = SMOKE_VIT
    return ImageEncoderViT(
        img_size=img_size,
        patch_size=v["patch_size"],
        embed_dim=v["embed_dim"],
        depth=v["depth"],
        num_heads=v["num_heads"],
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=v["window_size"],
        global_attn_indexes=v["global_attn_indexes"],
    )


@pytest.fixture(scope="module")
def sam_weights() -> dict[str, torch.Tensor]:
    """Meta-format weights with every parameter random (SAM zero-initialises its position tables)."""
    torch.manual_seed(0)
    encoder = sam_encoder(SMOKE_VIT["img_size"])
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "pos" in name:
                p.normal_(0, 0.5)
    return {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}


def slices() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    volume = torch.rand(1, 1, CROP, CROP, DEPTH)
    return volume, volume.permute(0, 4, 1, 2, 3).reshape(DEPTH, 1, CROP, CROP).expand(-1, 3, -1, -1)


def ours(weights: dict, vit: str) -> list[torch.Tensor]:
    model = build_sam_vit("smoke", weights, attention="padded", vit=vit).eval()
    encoder = SamSliceEncoder(model, out_blocks=range(len(model.blocks)), vit_numerics=vit)
    with torch.no_grad():
        return encoder(slices()[0])


def segment_anything_blocks(weights: dict) -> list[torch.Tensor]:
    """SAM's encoder built for CROP x CROP slices, its weights resized once at load as MA-SAM's
    load_from does (position embedding and global blocks' relative tables, bilinear)."""
    encoder = sam_encoder(CROP).eval()
    state = {k.removeprefix("image_encoder."): v for k, v in weights.items() if not k.startswith("image_encoder.neck")}
    pos = state["pos_embed"].permute(0, 3, 1, 2)
    state["pos_embed"] = F.interpolate(pos, (GRID, GRID), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    for index in SMOKE_VIT["global_attn_indexes"]:
        for axis in ("h", "w"):
            table = state[f"blocks.{index}.attn.rel_pos_{axis}"]
            resized = F.interpolate(table[None, None], (2 * GRID - 1, table.shape[1]), mode="bilinear", align_corners=False)
            state[f"blocks.{index}.attn.rel_pos_{axis}"] = resized[0, 0]
    encoder.load_state_dict(state, strict=False)
    out, x = [], encoder.patch_embed(slices()[1])
    with torch.no_grad():
        x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = block(x)
            out.append(x)
    return out


def timm_uniform_framework_blocks(weights: dict) -> list[torch.Tensor]:
    """timm's samvit with its own blocks, run as xmed-lab/TP-Mamba's sam_base.py runs it: patch
    embedding, the position embedding resampled by timm's function with its defaults, the blocks."""
    from timm.models.vision_transformer_sam import VisionTransformerSAM, checkpoint_filter_fn

    vit = VisionTransformerSAM(**SMOKE_VIT, use_rel_pos=True, num_classes=0, neck_chans=None).eval()
    vit.neck = nn.Identity()
    vit.load_state_dict({k: v for k, v in checkpoint_filter_fn(weights, vit).items() if not k.startswith("neck.")}, strict=False)
    out = []
    with torch.no_grad():
        x = vit.patch_embed(slices()[1])
        x = x + resample_abs_pos_embed_nhwc(vit.pos_embed, x.shape[1:3])
        for block in vit.blocks:
            x = block(x)
            out.append(x)
    return out


def relative_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b, strict=True))


def test_segment_anything_numerics_equal_sams_own_encoder(sam_weights):
    reference = segment_anything_blocks(sam_weights)
    assert relative_error(ours(sam_weights, "segment_anything"), reference) < 1e-5
    assert relative_error(ours(sam_weights, "timm"), reference) > 1e-3  # the test tells the two apart


def test_timm_numerics_equal_the_uniform_framework(sam_weights):
    reference = timm_uniform_framework_blocks(sam_weights)
    assert relative_error(ours(sam_weights, "timm"), reference) < 1e-6
    assert relative_error(ours(sam_weights, "segment_anything"), reference) > 1e-3


@pytest.mark.parametrize(("vit", "eps"), [("timm", 1e-5), ("segment_anything", 1e-6)])
def test_every_norm_of_the_vit_has_the_eps_of_its_numerics(vit, eps):
    norms = [m for m in build_sam_vit("smoke", vit=vit).modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * SMOKE_VIT["depth"] and {m.eps for m in norms} == {eps}


def test_the_sam_methods_take_the_numerics_as_an_option():
    from methods import create_model, get_method

    for name in ("samed", "masam", "tpmamba"):
        assert get_method(name).paper["vit"] == "timm"  # the uniform framework the paper's rows came from
        model = create_model(name, size="smoke", roi_size=(CROP,) * 3, vit="segment_anything")
        assert model.encoder.vit_numerics == "segment_anything"
        assert {m.eps for m in model.encoder.vit.blocks[0].modules() if isinstance(m, nn.LayerNorm)} == {1e-6}
    with pytest.raises(ValueError, match="vit must be one of timm, segment_anything, got 'sam'"):
        create_model("samed", size="smoke", roi_size=(CROP,) * 3, vit="sam")


def test_the_position_embedding_is_resized_once_per_grid_and_again_after_new_weights(monkeypatch):
    model = build_sam_vit("smoke").requires_grad_(False)
    encoder = SamSliceEncoder(model, out_blocks=(3,))
    calls = []
    resize = encoder._resize
    monkeypatch.setattr(encoder, "_resize", lambda pos, grid: calls.append(grid) or resize(pos, grid))
    volume = torch.rand(1, 1, CROP, CROP, DEPTH)
    first = encoder(volume)[0]
    assert torch.equal(encoder(volume)[0], first) and len(calls) == 1
    encoder(torch.rand(1, 1, 2 * CROP, 2 * CROP, DEPTH))  # the ViT's own grid: nothing to resize
    assert len(calls) == 1
    model.load_state_dict({**model.state_dict(), "pos_embed": torch.randn_like(model.pos_embed)})
    expected = resample_abs_pos_embed_nhwc(model.pos_embed, [GRID, GRID])
    assert torch.equal(encoder.position_embedding((GRID, GRID)), expected) and len(calls) == 2


def test_a_trained_position_embedding_gets_its_gradient():
    model = build_sam_vit("smoke")
    encoder = SamSliceEncoder(model, out_blocks=(3,))
    encoder(torch.rand(1, 1, CROP, CROP, DEPTH))[0].sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
