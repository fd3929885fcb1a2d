from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from bench.errors import UserError
from bench.plan.weights import read_checkpoint, resolve_backbone_weights
from methods import create_model
from methods.sam_common import SAM_VIT_B_WEIGHTS, build_sam_vit


@pytest.fixture(scope="module")
def reference_vit():
    torch.manual_seed(123)
    vit = build_sam_vit("paper")
    with torch.no_grad():
        for p in vit.parameters():  # distinct values everywhere, so a wrong mapping cannot pass
            p.normal_(0, 0.02)
    return vit


def to_meta_format(state: dict) -> dict:
    """Meta's sam_vit_b key format: image_encoder.* with mlp.lin1/lin2, plus the other SAM parts."""
    out = {f"image_encoder.{k.replace('mlp.fc', 'mlp.lin')}": v.clone() for k, v in state.items()}
    # SAM's neck is part of the image encoder in Meta's file; the harness never runs it, so drops it.
    out["image_encoder.neck.0.weight"] = torch.zeros(256, 768, 1, 1)
    out["image_encoder.neck.1.weight"] = torch.zeros(256)
    out["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    out["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 128)
    return out


def assert_vit_equal(model, reference):
    loaded = {k.removeprefix("encoder.vit."): v for k, v in model.state_dict().items() if k.startswith("encoder.vit.")}
    loaded = {k.replace(".qkv.base.", ".qkv."): v for k, v in loaded.items() if ".lora_" not in k}
    expected = reference.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_meta_checkpoint_loads_bit_exactly(tmp_path, reference_vit):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(to_meta_format(reference_vit.state_dict()), path)
    weights = resolve_backbone_weights(SAM_VIT_B_WEIGHTS, path, True, allow_random=False)
    assert not weights.random and "sha256" in weights.description
    assert_vit_equal(create_model("samed", size="paper", backbone_state=weights.state), reference_vit)


def test_timm_safetensors_loads_bit_exactly(tmp_path, reference_vit):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference_vit.state_dict().items()}, str(path))
    assert_vit_equal(create_model("samed", size="paper", backbone_state=read_checkpoint(path)), reference_vit)


class NotWeights:
    pass


def test_unusable_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match="cannot read SAM checkpoint"):
        read_checkpoint(truncated)
    pickled = tmp_path / "code.pth"
    torch.save({"x": NotWeights()}, pickled)  # weights_only refuses arbitrary objects
    with pytest.raises(UserError, match="cannot read SAM checkpoint"):
        read_checkpoint(pickled)


def test_wrong_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        create_model("samed", size="paper", backbone_state={"patch_embed.proj.weight": torch.zeros(768, 3, 8, 8)})


def test_paper_profile_without_weights_needs_an_explicit_choice(monkeypatch):
    def offline(spec):
        raise OSError("huggingface.co unreachable")

    monkeypatch.setattr("bench.plan.weights.hub_weights_file", offline)
    with pytest.raises(UserError, match="--sam-checkpoint PATH"):
        resolve_backbone_weights(SAM_VIT_B_WEIGHTS, None, True, allow_random=False)
    assert resolve_backbone_weights(SAM_VIT_B_WEIGHTS, None, True, allow_random=True).random
    assert resolve_backbone_weights(SAM_VIT_B_WEIGHTS, None, False, allow_random=False).random
    with pytest.raises(UserError, match="paper-size"):
        resolve_backbone_weights(SAM_VIT_B_WEIGHTS, __file__, False, allow_random=False)


@pytest.mark.slow
def test_doctor_loads_the_users_checkpoint_and_names_what_does_not_fit(tmp_path, reference_vit):
    from bench.costs.doctor import sam_weights_checks

    good = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(to_meta_format(reference_vit.state_dict()), good)
    (check,) = sam_weights_checks(["tpmamba", "samed", "unetr"], good)  # one backbone, checked once
    assert check.status == "ok" and "no missing or unexpected keys" in check.detail
    assert str(len(to_meta_format(reference_vit.state_dict()))) in check.detail

    incomplete = tmp_path / "incomplete.pth"
    state = to_meta_format(reference_vit.state_dict())
    del state["image_encoder.blocks.11.mlp.lin2.weight"]
    torch.save(state, incomplete)
    (check,) = sam_weights_checks(["masam"], incomplete)
    assert check.status == "fail" and "1 missing" in check.detail and "blocks.11.mlp.fc2.weight" in check.detail

    assert sam_weights_checks(["unetr", "vnet"], incomplete)[0].detail.startswith("not needed")


def test_doctor_exits_1_on_an_unreadable_checkpoint(tmp_path):
    from tests.conftest import invoke

    truncated = tmp_path / "sam_vit_b_01ec64.pth"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    result = invoke("doctor", "--sam-checkpoint", truncated, "--methods", "samed", "--device", "cpu")
    assert result.exit_code == 1
    assert "fail SAM weights" in result.output and "cannot read SAM checkpoint" in result.output


def test_a_job_is_handed_the_weights_file_and_reads_it_there(tmp_path):
    """Jobs get the checkpoint's name and identity, not its tensors; they read the same tensors."""
    import pickle

    import torch

    from bench.plan.weights import BackboneWeights

    path = tmp_path / "w.pt"
    torch.save({"a": torch.arange(4.0)}, path)
    weights = BackboneWeights({"a": torch.arange(4.0)}, "test weights", "sha256:x", path)
    handed = pickle.loads(pickle.dumps(weights.portable()))
    assert handed.state is None and not handed.random and handed.identity == "sha256:x"
    assert torch.equal(handed.tensors()["a"], weights.tensors()["a"])
    assert BackboneWeights(None, "random", "random").random and BackboneWeights(None, "random", "random").tensors() is None
