"""nnU-Net v2's own pipeline as a method: the network its planners configure, and one run end to end."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from bench.runs.costs import RunCost, read_sessions
from bench.runs.files import SESSIONS_FILE, ConfigFile, RunSummary
from methods import count_parameters, get_method
from methods.macs import count_macs
from methods.registry import build_on_meta
from splits import load_protocol
from tests.conftest import TEST_CASES, invoke


def test_the_default_plan_at_96_is_the_nnunet_rows_network():
    # Two independent routes to nnU-Net's 96^3 network: this method asks nnunetv2's topology
    # function, the 'nnunet' method writes the plan out by hand.
    assert count_parameters(build_on_meta("nnunetv2", roi_size=(96,) * 3)) == count_parameters(build_on_meta("nnunet", roi_size=(96,) * 3))


def test_resenc_presets_build_residual_encoders_with_nnunets_block_counts():
    from dynamic_network_architectures.building_blocks.residual import BasicBlockD

    network = build_on_meta("nnunetv2", roi_size=(96,) * 3, planner="ResEncM")
    blocks = [sum(isinstance(m, BasicBlockD) for m in stage.modules()) for stage in network.encoder.stages]
    assert blocks == [1, 3, 4, 6, 6]
    convs = [m for m in network.encoder.modules() if isinstance(m, torch.nn.Conv3d)]
    assert {m.kernel_size for m in convs} <= {(3, 3, 3), (1, 1, 1)}  # 1^3: the residual projections
    assert {m.stride for m in convs if m.stride != (1, 1, 1)} == {(2, 2, 2)}


def test_every_planner_preset_is_a_planner_class_of_nnunetv2_with_its_plans_name():
    """default, ResEncM, ResEncL and ResEncXL (nnU-Net Revisited's presets at 8, 24 and 40 GB) as
    nnunetv2's plan_experiments finds them, each writing the plans the pipeline then reads."""
    import inspect
    from os.path import join

    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    from methods.nnunetv2 import PLANNERS

    assert set(PLANNERS) == {"default", "ResEncM", "ResEncL", "ResEncXL"}
    folder = join(nnunetv2.__path__[0], "experiment_planning")
    for class_name, plans_name in PLANNERS.values():
        planner = recursive_find_python_class(folder, class_name, "nnunetv2.experiment_planning")
        assert planner is not None and inspect.signature(planner).parameters["plans_name"].default == plans_name
    xl = recursive_find_python_class(folder, PLANNERS["ResEncXL"][0], "nnunetv2.experiment_planning")
    assert inspect.signature(xl).parameters["gpu_memory_target_in_gb"].default == 40


def test_an_anisotropic_plan_keeps_in_plane_kernels_until_the_spacing_catches_up():
    from methods.nnunetv2 import PLANNED_FOR_DEFAULT_DATA as plan

    network = build_on_meta("nnunetv2", roi_size=plan.roi_size, **plan.options)
    first = [m for m in network.encoder.stages[0].modules() if isinstance(m, torch.nn.Conv3d)]
    # 3.1 mm slices against 0.861 mm pixels: nnU-Net neither convolves nor pools along z at first
    assert {m.kernel_size for m in first} == {(1, 3, 3)}
    assert network.encoder.stages[1][0].convs[0].conv.stride == (1, 2, 2)
    assert len(network.encoder.stages) == 6  # as nnU-Net planned for the synthetic abdomen


@pytest.mark.slow
def test_bench_list_and_flops_count_nnunetv2_at_its_planned_patch(monkeypatch):
    from dataclasses import replace

    import methods.registry
    from methods import CountedInput

    listed = {r["name"]: r for r in json.loads(invoke("list", "--json").stdout)}
    plan = get_method("nnunetv2").counted_input
    at_plan = count_parameters(build_on_meta("nnunetv2", roi_size=plan.roi_size, **plan.options))
    assert listed["nnunetv2"]["counted_input"] == "32x224x224" and listed["nnunetv2"]["params_total"] == at_plan[0]
    assert listed["nnunet"]["counted_input"] == "96^3" and listed["nnunet"]["counted_input_what"] == ""
    assert at_plan != count_parameters(build_on_meta("nnunetv2", roi_size=(96,) * 3))  # 6 stages with 1x3x3 kernels, not 5

    # fvcore's forward at a CPU-sized stand-in for the plan: counted at the method's patch, not --input's cube
    small = CountedInput((16, 64, 64), {"spacing": (3.0, 1.0, 1.0)}, "a test plan")
    monkeypatch.setitem(methods.registry._REGISTRY, "nnunetv2", replace(get_method("nnunetv2"), counted_input=small))
    result = invoke("flops", "--methods", "nnunetv2,nnunet", "--input", "32", "--json")
    rows = {r["name"]: r for r in json.loads(result.stdout)["methods"]}
    assert rows["nnunetv2"]["input"] == "16x64x64" and rows["nnunetv2"]["input_what"] == "a test plan"
    assert rows["nnunet"]["input"] == "32^3" and rows["nnunet"]["input_what"] == ""
    expected = count_parameters(build_on_meta("nnunetv2", roi_size=(16, 64, 64), spacing=(3.0, 1.0, 1.0)))[0]
    assert rows["nnunetv2"]["params_total"] == expected and rows["nnunetv2"]["published_gmacs"] is None


def test_an_unknown_planner_is_refused():
    import pytest

    with pytest.raises(ValueError, match="ResEncM, ResEncL"):
        build_on_meta("nnunetv2", planner="ResEncXXL")


@pytest.mark.slow
def test_nnunetv2_run_exports_the_draw_plans_trains_resumes_predicts_and_scores(tiny_synthetic, tmp_path, isolated_cache, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    out = tmp_path / "runs"
    args = ("run", "--methods", "nnunetv2", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out)
    # Without test-time mirroring: 8x fewer forwards (the option is nnU-Net's --disable_tta).
    fast = ("--profile", "smoke", "--device", "cpu", "--epochs", "3", "--set", "iterations_per_epoch=2", "--set", "mirroring=false")
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor_init, mirrored = nnUNetPredictor.__init__, []

    def recorded(self, *args, **kwargs):
        mirrored.append(kwargs["use_mirroring"])
        predictor_init(self, *args, **kwargs)

    monkeypatch.setattr(nnUNetPredictor, "__init__", recorded)

    # Killed after its second epoch (nnU-Net has saved checkpoint_latest at each, the harness kept
    # the first as checkpoint_latest.prev), then the latest damaged: the rerun must resume from the
    # previous one, training the second and third epochs only.
    epoch_end, epoch_start, started = nnUNetTrainer.on_epoch_end, nnUNetTrainer.on_epoch_start, []

    def interrupted_after_the_second_epoch(self):
        epoch_end(self)
        if self.current_epoch == 2:
            raise KeyboardInterrupt

    def counted(self):
        started.append(self.current_epoch)
        epoch_start(self)

    monkeypatch.setattr(nnUNetTrainer, "on_epoch_end", interrupted_after_the_second_epoch)
    assert invoke(*args, *fast).exit_code == 130
    (latest,) = out.glob("12pct/*/repeat0/nnunet/**/checkpoint_latest.pth")
    assert (latest.parent / "checkpoint_latest.prev.pth").exists()
    latest.write_bytes(latest.read_bytes()[:1000])  # as a kill mid-copy or a full disk leaves it
    monkeypatch.setattr(nnUNetTrainer, "on_epoch_end", epoch_end)
    monkeypatch.setattr(nnUNetTrainer, "on_epoch_start", counted)
    result = invoke(*args, *fast)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "checkpoint_latest.pth is unreadable (" in said and "resuming from checkpoint_latest.prev.pth at epoch 1" in said
    assert started == [1, 2]  # epoch indices 1 and 2: the first was not trained again
    assert len(list(latest.parent.glob("checkpoint_latest.pth.unreadable-*"))) == 1
    assert sorted(p.name for p in latest.parent.glob("checkpoint_*.pth")) == ["checkpoint_best.pth", "checkpoint_final.pth"]
    assert mirrored == [False]
    train = load_protocol().draws["12pct"][0].train

    (raw,) = (isolated_cache / "nnunetv2").glob("*/raw/Dataset501_BTCVbench")
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == [f"BTCV_{c}.nii.gz" for c in sorted(train)]
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == [f"BTCV_{c}_0000.nii.gz" for c in sorted(train)]
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [f"BTCV_{c}_0000.nii.gz" for c in TEST_CASES]
    assert json.loads((raw / "dataset.json").read_text())["labels"]["liver"] == 6
    (plans,) = (isolated_cache / "nnunetv2").glob("*/preprocessed/Dataset501_BTCVbench/nnUNetPlans.json")

    run_dir = out / "12pct" / "nnunetv2[iterations_per_epoch=2,mirroring=False]" / "repeat0"
    config = ConfigFile.read(run_dir / "config.json")
    assert config.config.family == "own pipeline" and config.provenance.versions["nnunetv2"]
    plan = config.provenance.pipeline["nnunetv2"]
    assert plan["patch_size"] == json.loads(plans.read_text())["configurations"]["3d_fullres"]["patch_size"]
    # The network trained is the one nnU-Net planned, and the builder that bench list and bench flops
    # count gives the same network for that plan's patch and spacing.
    assert config.params_total == config.params_trainable > 0
    info = get_method("nnunetv2")  # its builder directly: nnU-Net's patch need not be a multiple of 16
    planned = info.builder(1, 14, tuple(plan["patch_size"]), **info.hyperparameters("smoke"), spacing=tuple(plan["spacing_mm"]))
    assert count_parameters(planned)[0] == config.params_total
    # Its GMACs were counted on the network nnU-Net trained, at the patch it planned, as bench flops counts.
    assert config.gmacs_input == plan["patch_size"]
    assert config.gmacs == pytest.approx(count_macs(planned, torch.rand(1, 1, *plan["patch_size"])).gmacs, rel=0.01)
    assert [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert (run_dir / "nnunet").is_dir()

    summary = RunSummary.read(run_dir / "summary.json")
    # Both sessions' cost: epochs 1-2, stopped; then 2-3 again from the previous checkpoint, 2 steps each.
    first, second = read_sessions(run_dir / SESSIONS_FILE)
    assert (first.outcome, first.steps, second.outcome, second.steps) == ("stopped", 4, "finished", 4)
    cost = RunCost.read(summary.cost)
    assert cost.steps == 8 and cost.sessions == 2 and cost.train_seconds == round(first.train_seconds + second.train_seconds, 1)
    assert cost.peak_memory_train_mib > 0 and cost.step_seconds_median > 0 and cost.device.endswith("threads)")
    assert [c.case for c in summary.metric_per_case] == list(TEST_CASES)
    assert all(len(c.metrics) == 13 for c in summary.metric_per_case) and summary.eval_space == "original"
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 * 13 and {r["method"] for r in rows} == {"nnunetv2[iterations_per_epoch=2,mirroring=False]"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows if r["dice"])  # empty: organ absent from both

    table = (out / "report" / "table1.md").read_text()
    assert "| nnunetv2[iterations_per_epoch=2,mirroring=False] (nnU-Net v2, own pipeline; 1 of 5 draws" in table

    again = invoke(*args, *fast)
    assert again.exit_code == 0 and "finished earlier, skipped" in again.output


def test_a_planner_nnunet_does_not_have_is_one_line_before_nnunet_starts(tiny_synthetic, tmp_path):
    result = invoke(
        "run", "--methods", "nnunetv2", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", tmp_path,
        "--profile", "smoke", "--device", "cpu", "--set", "planner=ResEncXXL",
    )  # fmt: skip
    assert result.exit_code == 2 and "planner must be one of default, ResEncM, ResEncL" in result.output
    assert not (tmp_path / "12pct").exists()


def test_a_paper_grid_of_nnunetv2_alone_leaves_the_preprocessing_to_nnunet(tiny_synthetic, tmp_path, isolated_cache):
    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import prepare_grid
    from bench.plan.profiles import PROFILES
    from bench.plan.runs import RunRequest

    def grid_of(methods):
        request = RunRequest(
            methods=methods, data="12pct", repeats="0", data_root=tiny_synthetic, profile="paper", device="cpu", out=tmp_path
        )
        return prepare_grid(request, Console(quiet=True), harness=HARNESS)

    alone = grid_of(["nnunetv2"])
    assert alone.cases == {} and not (isolated_cache / "preprocessed").exists()
    assert alone.provenance.preprocess_cache is None
    # beside a method the harness trains, or in the smoke profile (nnU-Net gets our 8 mm volumes), they are
    # The pipeline says what it needs: nnU-Net the harness's 8 mm volumes in the smoke profile only,
    # the harness's (every method without a pipeline) always.
    own = get_method("nnunetv2").pipeline
    assert alone.runs[0].pipeline is own and own.needs_preprocessed(PROFILES["smoke"]) and not own.needs_preprocessed(PROFILES["paper"])
    assert get_method("unetr").pipeline is None and HARNESS.needs_preprocessed(PROFILES["paper"])
