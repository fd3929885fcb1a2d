from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
from methods import count_parameters, create_model, get_method, list_methods
from methods.registry import _REGISTRY, UnknownMethodError, build_on_meta, register_method
from tests.conftest import built_in_methods


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'; known methods: .*swinunetr.*unetr"):
        get_method("nope")


def test_first_methods_are_registered_with_metadata():
    names = {m.name for m in list_methods()}
    assert {"unetr", "swinunetr"} <= names
    for name in ("unetr", "swinunetr"):
        info = get_method(name)
        assert info.family == "3d-net" and "Hatamizadeh" in info.reference


@pytest.mark.parametrize(("name", "published_millions"), [("unetr", 92.8), ("swinunetr", 62.2)])
def test_paper_size_parameter_counts_match_published(name, published_millions):
    total, trainable = count_parameters(build_on_meta(name, size="paper", roi_size=(96, 96, 96)))
    assert total == trainable  # trained from scratch: everything trains
    assert total / 1e6 == pytest.approx(published_millions, abs=0.05)


@pytest.mark.parametrize("name", [info.name for info in built_in_methods() if info.pipeline is None])
def test_every_harness_trained_built_in_maps_a_smoke_crop_to_class_logits(name):
    """Read from the registry: a new built-in is checked without a line here."""
    model = create_model(name, size="smoke", roi_size=(32, 32, 32)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 14, 32, 32, 32)  # no deep-supervision list in eval mode


def test_crop_size_must_suit_the_network():
    with pytest.raises(ValueError, match="multiple of 32"):
        create_model("swinunetr", size="smoke", roi_size=(48, 48, 48))


def test_trainable_rule_freezes_everything_else():
    @register_method("_frozen_toy", family="sam-adapter", reference="test", trainable=lambda m: ["head.weight", "head.bias"])
    def build(in_channels, out_channels, roi_size):
        return nn.ModuleDict({"backbone": nn.Conv3d(in_channels, 4, 3), "head": nn.Conv3d(4, out_channels, 1)})

    try:
        model = create_model("_frozen_toy")
        total, trainable = count_parameters(model)
        assert trainable == 4 * 14 + 14 and total == trainable + 4 * 27 + 4
        assert not model["backbone"].weight.requires_grad
    finally:
        _REGISTRY.pop("_frozen_toy")


def test_overrides_reach_the_builder():
    info = methods.get_method("unetr")
    assert info.hyperparameters("smoke", feature_size=4)["feature_size"] == 4
    assert info.hyperparameters("paper")["hidden_size"] == 768
    narrow = create_model("unetr", size="smoke", roi_size=(32, 32, 32), feature_size=4)
    default = create_model("unetr", size="smoke", roi_size=(32, 32, 32))
    assert narrow.encoder1.layer.conv1.conv.out_channels == 4 and default.encoder1.layer.conv1.conv.out_channels == 8


def test_methods_all_is_every_registered_method():
    from bench.cli.common import method_names

    names = [n for n in method_names("all") if n in {info.name for info in built_in_methods()}]
    assert method_names("all") == [info.name for info in list_methods()] and len(names) == 12
    paper = {"tpmamba", "samed", "masam", "unetr", "swinunetr", "nnunet", "vnet", "mednext", "uxnet", "umamba", "transbts"}
    assert set(names) == paper | {"nnunetv2"}
    assert method_names("none") == [] and method_names("unetr, nnunet") == ["unetr", "nnunet"]


def test_options_are_checked_at_the_runs_crop_without_allocating():
    """TransBTS with --profile paper --roi 96 --set img_dim=96 is valid: checked at 96^3, not a 32^3 toy."""
    from bench.errors import UserError
    from bench.plan.profiles import PROFILES
    from bench.plan.runs import checked_options

    paper96 = PROFILES["paper"]
    assert checked_options("transbts", {"img_dim": 96}, paper96) == {"img_dim": 96}
    with pytest.raises(UserError, match=r"transbts\[img_dim=64\]: .*defined for 64\^3 crops only.*use --roi 64"):
        checked_options("transbts", {"img_dim": 64}, paper96)
    assert checked_options("nnunet", {"features": "8,16,32,64,64"}, PROFILES["smoke"]) == {"features": (8, 16, 32, 64, 64)}


def test_a_builders_own_bug_is_not_reported_as_bad_input():
    from bench.plan.profiles import PROFILES
    from bench.plan.runs import checked_options

    @register_method("_typo", family="3d-net", reference="test", paper=dict(width=4))
    def build(in_channels, out_channels, roi_size, width):
        return nn.Conv3d(in_channels, out_channels, kernel_size=width, nonsense=1)  # a TypeError: the builder's bug

    try:
        with pytest.raises(TypeError, match="nonsense"):  # a traceback for the developer, not a one-line user error
            checked_options("_typo", {"width": 3}, PROFILES["smoke"])
    finally:
        _REGISTRY.pop("_typo")


def test_parameters_are_counted_on_the_meta_device():
    from methods.registry import build_on_meta

    model = build_on_meta("tpmamba", size="paper", roi_size=(96, 96, 96))
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == (106_329_102, 17_445_646)
    # A builder that reads values while building falls back to a real build, with the same count.
    assert count_parameters(build_on_meta("swinunetr")) == count_parameters(create_model("swinunetr", roi_size=(96, 96, 96)))
