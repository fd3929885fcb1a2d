"""The pipeline contract (``sam3d_bench.Pipeline``, ``RunContext``, ``HarnessPipeline``): the registry
checks a pipeline object when a method registers, and both worked examples of docs/add-a-method.md,
loaded from the page itself, run through ``bench run`` beside each other."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from methods import plugins, registry
from tests.conftest import invoke

DOC = Path(__file__).resolve().parents[1] / "docs" / "add-a-method.md"


def documented_module(first_line: str) -> str:
    """The Python block of docs/add-a-method.md whose first line is ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line + "\n")]
    return block


@pytest.fixture
def example_site(tmp_path, monkeypatch):
    """The page's two examples as plugin modules on sys.path; the registry starts from the built-ins."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "plug_mirrored.py").write_text(documented_module("# my_methods/mirrored.py"))
    (site / "plug_hu_lookup.py").write_text(documented_module("# my_methods/hu_lookup.py"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if v.source.builtin})
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setenv(plugins.PLUGIN_ENV, "plug_mirrored,plug_hu_lookup")
    yield site
    for name in ("plug_mirrored", "plug_hu_lookup"):
        sys.modules.pop(name, None)


def test_the_registry_refuses_what_is_not_a_pipeline():
    def register(pipeline):
        registry.register_method("not_registered", family="3d-net", reference="test", pipeline=pipeline)(lambda **_: None)

    class Partial:
        eval_spaces = ["original"]

        def open(self, context, console): ...

    with pytest.raises(plugins.PluginError, match="pipeline must be a pipeline object"):
        register("bench.pipelines.nnunetv2:NNUNET_V2")  # the module:attribute string of before
    with pytest.raises(plugins.PluginError) as partial:
        register(Partial())
    assert "lacks a callable needs_preprocessed" in str(partial.value) and "non-empty tuple" in str(partial.value)
    assert "not_registered" not in registry._REGISTRY


def test_nnunet_v2_is_registered_with_its_pipeline_object_as_built_in():
    from sam3d_bench import Pipeline, get_method

    info = get_method("nnunetv2")
    assert isinstance(info.pipeline, Pipeline) and info.source.builtin and info.pipeline.eval_spaces == ("original",)
    assert get_method("unetr").pipeline is None  # the harness's


def small_context(profile_roi: int = 16):
    from bench.data.labels import BTCV_LABELS
    from bench.plan.profiles import PROFILES
    from sam3d_bench import RunContext

    profile = replace(PROFILES["smoke"], roi=profile_roi)
    empty = dict(
        name="x",
        method="mirrored_unet",
        options={},
        config=None,
        profile_overrides={},
        threads=1,
        train_ids=(),
        test_ids=(),
        originals={},
        preprocessed={},
        weights=None,
        run_dir=Path("."),
        cache_dir=Path("."),
    )
    return RunContext(profile=profile, device="cpu", label_set=BTCV_LABELS, **empty)


def test_the_documented_mirrored_inference_is_the_mean_over_mirrorings(example_site):
    from methods import create_model, get_method
    from sam3d_bench import PreprocessedCase

    pipeline = get_method("mirrored_unet").pipeline
    torch.manual_seed(0)
    model = create_model("mirrored_unet", size="smoke", roi_size=(16, 16, 16)).eval()
    image = np.random.default_rng(0).random((1, 16, 16, 16), dtype=np.float32)
    case = PreprocessedCase("0001", image, np.zeros_like(image, dtype=np.uint8), 8.0, np.eye(4))
    context = small_context()
    with torch.no_grad():
        probabilities = pipeline.probabilities(model, case, context)
        mirrored = pipeline.probabilities(model, replace(case, image=np.flip(image, 2).copy()), context)
        plain = type(pipeline).__mro__[1].probabilities(pipeline, model, case, context)  # HarnessPipeline's: one pass
    assert probabilities.shape == (14, 16, 16, 16)
    torch.testing.assert_close(probabilities.sum(dim=0), torch.ones(16, 16, 16))
    torch.testing.assert_close(mirrored, torch.flip(probabilities, (2,)), rtol=1e-5, atol=1e-6)  # one crop: exact up to rounding
    assert not torch.allclose(plain, probabilities)  # the hook is not the harness's own inference


def test_an_own_pipeline_is_refused_in_a_space_it_cannot_predict(example_site, tiny_synthetic, tmp_path):
    args = ["--data-root", tiny_synthetic, "--out", tmp_path / "runs", "--profile", "smoke", "--device", "cpu"]
    result = invoke("run", "--methods", "hu_lookup", "--data", "12pct", "--eval-space", "preprocessed", *args)
    assert result.exit_code == 2 and "hu_lookup can be scored in the original space only" in result.output
    assert not (tmp_path / "runs" / "12pct").exists()


@pytest.mark.slow
def test_both_documented_pipelines_run_beside_each_other_and_resume(example_site, tiny_synthetic, tmp_path, monkeypatch):
    import plug_hu_lookup
    import plug_mirrored

    import splits

    opened, mirrored_calls = [], []
    original_open, original_probabilities = plug_hu_lookup.IntensityLookup.open, plug_mirrored.MirroredInference.probabilities

    def open_and_keep(self, context, console):
        opened.append(context)
        return original_open(self, context, console)

    def counted(self, model, case, context):
        mirrored_calls.append(case.case_id)
        assert not model.training and not torch.is_grad_enabled()
        return original_probabilities(self, model, case, context)

    monkeypatch.setattr(plug_hu_lookup.IntensityLookup, "open", open_and_keep)
    monkeypatch.setattr(plug_mirrored.MirroredInference, "probabilities", counted)
    out = tmp_path / "runs"
    args = ["run", "--methods", "hu_lookup,mirrored_unet", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic]
    args += ["--out", out, "--profile", "smoke", "--device", "cpu", "--epochs", "1"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output

    draw = splits.load_protocol(splits.DEFAULT_PROTOCOL).check_fraction("12pct")[0]
    (context,) = opened
    assert (context.train_ids, context.test_ids) == (tuple(draw.train), tuple(draw.test))
    assert context.preprocessed == {} and set(context.originals) == {*draw.train, *draw.test}  # it said it needs none
    assert context.run_dir == out / "12pct" / "hu_lookup" / "repeat0" and context.device == "cpu" and context.threads >= 1
    assert context.config.eval_space == "original" and context.label_set.num_classes == 14
    assert set(draw.test) <= set(mirrored_calls)  # the scored predictions went through the hook

    lookup_run = out / "12pct" / "hu_lookup" / "repeat0"
    assert (lookup_run / "lookup.npy").exists() and json.loads((lookup_run / "config.json").read_text())["params_total"] == 0
    summary = json.loads((lookup_run / "summary.json").read_text())
    assert [case["case"] for case in summary["metric_per_case"]] == list(draw.test)
    assert all(case["metrics"]["liver"]["dice"] > 0.2 for case in summary["metric_per_case"])  # intensities alone find the liver
    results = (out / "results.csv").read_text()
    assert "hu_lookup" in results and "mirrored_unet" in results

    again = invoke(*args)
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2 and len(opened) == 1
