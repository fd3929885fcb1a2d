"""End to end through the CLI, in process, on the tiny synthetic abdomen."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import invoke

FAST = ["--profile", "smoke", "--device", "cpu", "--epochs", "1"]


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([line for line in lines if line.startswith("error:")]) == 1, result.output
    return result.output


@pytest.mark.slow
def test_run_end_to_end_then_rerun_skips(tiny_synthetic, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    result = invoke("run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "Liver" in result.output
    run_dir = out / "12pct" / "unetr" / "repeat0"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["provenance"]["synthetic"] is True and "SYNTHETIC" in config["provenance"]["stamp"]
    assert config["provenance"]["profile"] == "smoke" and config["provenance"]["device"] == "cpu"
    assert config["provenance"]["profile_overrides"] == {"epochs": 1} and config["profile"]["epochs"] == 1
    assert config["provenance"]["versions"]["torch"] and config["train_cases"] == ["0024", "0025", "0032"]
    import pandas
    import scipy

    # The statistics' p-values depend on these: every run records them.
    assert (config["provenance"]["versions"]["scipy"], config["provenance"]["versions"]["pandas"]) == (
        scipy.__version__,
        pandas.__version__,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [c["case"] for c in summary["metric_per_case"]] == ["0035", "0036", "0037", "0038", "0039", "0040"]
    assert 0.0 <= summary["mean"]["liver"]["dice"] <= 1.0 and summary["synthetic"] is True
    assert [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()] == [1]
    assert (run_dir / "checkpoint.pt").exists()
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 * 13 and list(rows[0]) == ["method", "data", "repeat", "case", "organ", "dice", "nsd", "hd95", "n_ref", "n_pred"]
    liver = next(r for r in rows if r["organ"] == "liver")
    assert int(liver["n_ref"]) > 0 and int(liver["n_pred"]) >= 0  # voxel counts on the label file's grid
    again = invoke("run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert again.exit_code == 0 and "finished earlier, skipped" in again.output
    # Same folder, different configuration: refused rather than mixed.
    clash = invoke(
        "run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *FAST[:-1], "2"
    )
    assert "different configuration" in one_error_line(clash)
    # A run trained by an earlier revision of the network is not taken for a current one.
    import dataclasses

    from methods.registry import _REGISTRY

    assert config["method_revision"] == _REGISTRY["unetr"].revision
    monkeypatch.setitem(_REGISTRY, "unetr", dataclasses.replace(_REGISTRY["unetr"], revision=_REGISTRY["unetr"].revision + 1))
    revised = invoke("run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert "different configuration" in one_error_line(revised)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "unetr,nosuch"], "unknown method 'nosuch'"),
        (["--data", "50pct"], "protocol tpmamba has no data fraction '50pct'; choose one of 100pct, 25pct, 12pct"),
        (["--protocol", "x9"], "unknown protocol 'x9'; built-in: cv5, synapse8, tpmamba (or the path of a protocol file)"),
        (["--executor", "pbs"], "unknown executor 'pbs'"),
        (["--repeats", "7"], "out of range"),
        (["--repeats", "a,b"], "--repeats must be"),
        (["--profile", "fast"], "unknown profile 'fast'"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--methods", "swinunetr", "--roi", "48"], "multiple of 32"),
        (["--methods", "transbts", "--profile", "paper", "--roi", "64"], "defined for 96^3 crops only"),
        (["--profile-set", "nosuch=1"], "--profile-set nosuch: no such setting; the profile's settings: augment, checkpoint_minutes"),
        (["--profile-set", "lr=abc"], "profile setting lr takes a number, got 'abc'"),
        (["--profile-set", "warmup_fraction=1.5"], "profile setting warmup_fraction must be in [0, 1), got 1.5"),
        (["--profile-set", "hu_max=-500"], "profile setting hu_max must be above hu_min, got -500.0"),
        (["--profile-set", "model_size=huge"], "profile setting model_size must be one of paper, smoke, got 'huge'"),
        (["--profile-set", "name=paper"], "--profile-set name: no such setting"),
        # A typo is answered with the closest name, never the whole list.
        (["--methods", "unetr,tpmamb"], "unknown method 'tpmamb'; did you mean 'tpmamba'?"),
        (["--data", "25pt"], "protocol tpmamba has no data fraction '25pt'; did you mean '25pct'?"),
        (["--protocol", "synapse"], "unknown protocol 'synapse'; did you mean 'synapse8'? (or the path of a protocol file)"),
        (["--profile", "smok"], "unknown profile 'smok'; did you mean 'smoke'?"),
        (["--profile-set", "warmup_fractoin=0.1"], "--profile-set warmup_fractoin: no such setting; did you mean 'warmup_fraction'?"),
        (["--methods", "tpmamba[rank=4]"], "method 'tpmamba' has no option 'rank'; did you mean 'lora_rank'?"),
        (["--executor", "slrum"], "unknown executor 'slrum'; did you mean 'slurm'?"),
        (["--eval-space", "preprocesed"], "unknown --eval-space 'preprocesed'; did you mean 'preprocessed'?"),
        # nnU-Net's pipeline predicts on each label file's grid: asked for the preprocessed grid, it says so when planned
        (["--methods", "unetr,nnunetv2", "--eval-space", "preprocessed"], "nnunetv2 can be scored in the original space only"),
    ],
)
def test_bad_options_exit_2_with_one_line(tiny_synthetic, tmp_path, args, message):
    result = invoke("run", "--data-root", tiny_synthetic, "--out", tmp_path, "--profile", "smoke", "--device", "cpu", *args)
    assert message in one_error_line(result)
    assert not (tmp_path / "results.csv").exists()


def test_smoke_runs_one_draw_unless_told_and_paper_every_draw(tiny_synthetic, tmp_path, isolated_cache):
    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import prepare_grid
    from bench.plan.runs import RunRequest

    def draws(profile, repeats=None):
        request = RunRequest(["nnunetv2"], "12pct", repeats, tiny_synthetic, profile, "cpu", tmp_path / profile)
        return [run.repeat for run in prepare_grid(request, Console(quiet=True), harness=HARNESS).runs]

    assert draws("paper") == [0, 1, 2, 3, 4]
    assert draws("smoke") == [0]
    assert draws("smoke", "all") == [0, 1, 2, 3, 4] and draws("smoke", "2,3") == [2, 3]


def test_every_profile_setting_can_be_changed_and_the_change_is_recorded(tiny_synthetic, tmp_path, isolated_cache):
    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import prepare_grid
    from bench.plan.runs import RunRequest

    def planned(**changes):
        request = RunRequest(["unetr"], "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs", **changes)
        return prepare_grid(request, Console(quiet=True), harness=HARNESS)

    grid = planned(epochs=2, profile_overrides={"seed": 3, "lr": 5e-3, "spacing_mm": 12})
    (run,) = grid.runs
    profile = run.config.profile
    assert (profile["epochs"], profile["seed"], profile["lr"], profile["preprocess"]["spacing_mm"]) == (2, 3, 0.005, 12.0)
    assert grid.provenance.profile_overrides == {"epochs": 2, "seed": 3, "lr": 0.005, "spacing_mm": 12}
    assert "profile smoke with epochs=2, lr=0.005, seed=3, spacing_mm=12" in grid.provenance.stamp
    (base,) = planned().runs
    assert run.config.seed != base.config.seed and run.hash != base.hash  # the seed decides the run's seed, and is hashed
    assert planned().provenance.profile_overrides is None and " with " not in planned().provenance.stamp


def planned_labels(tiny_synthetic, tmp_path, methods, options=None):
    """The run labels ``bench run --methods METHODS --set ...`` plans (smoke profile, 12%, draw 0)."""

    from rich.console import Console

    from bench.pipelines.harness import HARNESS
    from bench.plan.grid import decide, plan_runs
    from bench.plan.runs import RunRequest

    request = RunRequest(methods, "12pct", "0", tiny_synthetic, "smoke", "cpu", tmp_path / "runs", options=options or {})
    return [run.method for run in plan_runs(decide(request, Console(quiet=True)), "synthetic-v1", harness=HARNESS)]


def test_options_per_method_in_the_method_list(tiny_synthetic, tmp_path):
    from bench.errors import UserError
    from bench.plan.runs import split_method_list

    assert split_method_list("tpmamba[r=48,planes=dw],masam") == ["tpmamba[r=48,planes=dw]", "masam"]
    labels = planned_labels(tiny_synthetic, tmp_path, ["tpmamba[r=16,planes=dw]", "masam", "tpmamba", "tpmamba"])
    assert labels == ["tpmamba[planes=dw,r=16]", "masam", "tpmamba"]  # a method named twice is planned once
    # --set reaches every method named; bracket options their own method, over --set.
    shared = planned_labels(tiny_synthetic, tmp_path, ["tpmamba[r=16]", "samed"], {"slice_scale": 2})
    assert shared == ["tpmamba[r=16,slice_scale=2]", "samed[slice_scale=2]"]
    # A comma list keeps its commas.
    (label,) = planned_labels(tiny_synthetic, tmp_path, ["nnunet[features=8,16,32,64,128,deep_supervision=true]"])
    assert label == "nnunet[deep_supervision=True,features=(8, 16, 32, 64, 128)]"
    with pytest.raises(UserError, match=r"masam\[r=48\]: method 'masam' has no option 'r'"):
        planned_labels(tiny_synthetic, tmp_path, ["tpmamba", "masam"], {"r": 48})


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ("tpmamba[r=16", "write options as NAME[KEY=VALUE,...]"),
        ("tpmamba[r]", "expects KEY=VALUE, got 'r'"),
        ("tpmamba[depth=3],masam", "tpmamba[depth=3]: method 'tpmamba' has no option 'depth'"),
        ("tpmamba,nosuch[r=1]", "unknown method 'nosuch'"),
    ],
)
def test_bad_method_entries_exit_2_naming_the_entry(tiny_synthetic, tmp_path, methods, message):
    result = invoke("run", "--methods", methods, "--data-root", tiny_synthetic, "--out", tmp_path, "--profile", "smoke", "--device", "cpu")
    assert message in one_error_line(result)


def test_bad_data_roots_exit_2(tmp_path):
    assert "no BTCV layout" in one_error_line(invoke("run", "--data-root", tmp_path, "--out", tmp_path / "r", *FAST))
    assert "does not exist" in one_error_line(invoke("run", "--data-root", tmp_path / "missing", *FAST))


def test_corrupt_case_names_its_file_and_keeps_finished_work(tiny_synthetic, tmp_path, isolated_cache):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic, root)
    bad = root / "RawData" / "Training" / "label" / "label0038.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated download
    result = invoke("run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", root, "--out", tmp_path / "r", *FAST)
    assert "label0038.nii.gz" in one_error_line(result)
    # Cases preprocessed before the bad one stay cached for the rerun.
    assert sorted(p.stem for p in isolated_cache.glob("preprocessed/*/*.npz")) == ["0024", "0025", "0032", "0035", "0036", "0037"]
    check = invoke("data", "check", "--data-root", root)
    assert check.exit_code == 2 and "label0038.nii.gz" in check.output


def test_data_check_passes_on_the_synthetic_abdomen(tiny_synthetic):
    result = invoke("data", "check", "--data-root", tiny_synthetic)
    assert result.exit_code == 0 and "30 cases OK" in result.output and "synthetic" in result.output


def test_data_synth_refuses_to_mix_datasets(tiny_synthetic):
    result = invoke("data", "synth", "--out", tiny_synthetic, "--spacing-scale", "2")
    assert "different synthetic dataset" in one_error_line(result)


def test_list_json_is_pure_json_with_counts():
    result = invoke("list", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["unetr"]["params_total"] == rows["unetr"]["params_trainable"]
    assert abs(rows["unetr"]["params_total"] / 1e6 - 92.8) < 0.05
    assert rows["swinunetr"]["family"] == "3d-net"


def test_data_root_from_the_environment(tiny_synthetic, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tiny_synthetic))
    result = invoke("data", "check")
    assert result.exit_code == 0 and str(tiny_synthetic) in result.output.replace("\n", "")


@pytest.mark.slow
def test_sam_method_runs_in_smoke_on_a_stamped_random_backbone(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    result = invoke("run", "--methods", "tpmamba", "--data", "12pct", "--repeats", "1", "--data-root", tiny_synthetic, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "random backbone" in result.output
    config = json.loads((out / "12pct" / "tpmamba" / "repeat1" / "config.json").read_text())
    assert "random backbone" in config["weights"] and "random backbone" in config["provenance"]["stamp"]
    assert config["params_trainable"] < config["params_total"]


def test_paper_profile_sam_method_without_weights_exits_2(tiny_synthetic, tmp_path, monkeypatch):
    def offline(spec):
        raise OSError("huggingface.co unreachable")

    monkeypatch.setattr("bench.plan.weights.hub_weights_file", offline)
    args = ["run", "--methods", "masam", "--data-root", tiny_synthetic, "--out", tmp_path, "--profile", "paper", "--device", "cpu"]
    assert "--sam-checkpoint PATH" in one_error_line(invoke(*args))
    smoke_with_checkpoint = invoke("run", "--methods", "samed", "--sam-checkpoint", __file__, "--out", tmp_path, *FAST)
    assert "paper-size" in one_error_line(smoke_with_checkpoint)


@pytest.mark.slow
def test_ablation_variant_runs_under_its_own_label(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "--methods", "tpmamba", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *FAST]
    result = invoke(*args, "--set", "planes=dw", "--set", "r=16", "--set", "multiscale=false")
    assert result.exit_code == 0, result.output
    run_dir = out / "12pct" / "tpmamba[multiscale=False,planes=dw,r=16]" / "repeat0"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["hyperparameters"]["planes"] == "dw" and config["hyperparameters"]["r"] == 16
    assert config["hyperparameters"]["multiscale"] is False and config["base_method"] == "tpmamba"
    assert "unknown" not in result.output
    # The label is printed as written, not read as rich markup: in the table, the skip line and status.
    assert "tpmamba[multiscale=False,planes=dw,r=16] (1 draw)" in result.output
    again = invoke(*args, "--set", "planes=dw", "--set", "r=16", "--set", "multiscale=false")
    assert "tpmamba[multiscale=False,planes=dw,r=16]" in again.output.replace("\n", "") and "skipped" in again.output
    status = invoke("status", out)
    assert "tpmamba[multiscale=False,planes=dw,r=16]" in status.output
    assert "has no option 'depth'" in one_error_line(invoke(*args, "--set", "depth=3"))
    assert "tpmamba[planes=xy]: planes must be" in one_error_line(invoke(*args, "--set", "planes=xy"))
    assert "KEY=VALUE" in one_error_line(invoke(*args, "--set", "r"))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("size=paper", "option 'size' of 'unetr' cannot be set: the profile sets it"),
        ("feature_size=big", "option 'feature_size' of 'unetr' takes a whole number, got 'big'"),
        ("feature_size=true", "takes a whole number, got True"),
        ("hidden_size=90", "hidden_size should be divisible by num_heads"),  # MONAI's own check, at the run's crop
        ("nosuch=1", "has no option 'nosuch'; its options: feature_size, hidden_size, mlp_dim, num_heads"),
    ],
)
def test_every_set_problem_is_one_line_naming_the_key(tiny_synthetic, tmp_path, option, message):
    args = ["run", "--methods", "unetr", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", tmp_path, *FAST]
    assert message in one_error_line(invoke(*args, "--set", option))
    assert not (tmp_path / "12pct").exists()  # refused before any run started


@pytest.mark.slow
def test_library_baselines_run_in_the_smoke_profile(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    result = invoke(
        "run",
        "--methods",
        "nnunet,umamba,transbts",
        "--data",
        "12pct",
        "--repeats",
        "0",
        "--data-root",
        tiny_synthetic,
        "--out",
        out,
        *FAST,
    )
    assert result.exit_code == 0, result.output
    for name in ("nnunet", "umamba", "transbts"):
        assert (out / "12pct" / name / "repeat0" / "summary.json").exists()
    # bench run ends by rendering the folder's report, and says where it is
    assert f"report: {out / 'report' / 'report.html'}" in result.output.replace("\n", "")
    html = (out / "report" / "report.html").read_text()
    assert all(f'data-method="{name}"' in html for name in ("nnunet", "umamba", "transbts"))
    # The nnunet row says what it is, beside nnU-Net's own pipeline (nnunetv2) in a report.
    assert "| nnunet (nnU-Net architecture, uniform protocol; 1 of 5 draws" in (out / "report" / "table1.md").read_text()
    assert "| umamba (1 of 5 draws" in (out / "report" / "table1.md").read_text()  # no title: its name says it


@pytest.mark.slow
def test_a_failing_run_is_recorded_the_grid_goes_on_and_a_rerun_retries_it(tiny_synthetic, tmp_path, monkeypatch):
    import bench.pipelines.training

    real_train = bench.pipelines.training.train
    calls = []

    def train_that_fails_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError("loss is NaN at epoch 1")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(bench.pipelines.training, "train", train_that_fails_first)
    out = tmp_path / "runs"
    args = ["run", "--methods", "unetr,nnunet", "--data", "12pct", "--repeats", "0", "--data-root", tiny_synthetic, "--out", out, *FAST]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert "1 of 2 runs failed" in result.output and "FloatingPointError: loss is NaN at epoch 1" in result.output
    failure = json.loads((out / "12pct" / "unetr" / "repeat0" / "failed.json").read_text())
    assert failure["reason"] == "FloatingPointError: loss is NaN at epoch 1" and "Traceback" in failure["traceback"]
    assert (out / "12pct" / "nnunet" / "repeat0" / "summary.json").exists()  # the grid went on
    html = (out / "report" / "report.html").read_text()
    assert "failed: unetr repeat 0: FloatingPointError: loss is NaN at epoch 1" in html
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert not (out / "12pct" / "unetr" / "repeat0" / "failed.json").exists()
    assert (out / "12pct" / "unetr" / "repeat0" / "summary.json").exists()


def test_methods_all_expands_to_every_registered_method(tiny_synthetic, tmp_path):
    result = invoke("run", "--methods", "all", "--data-root", tiny_synthetic, "--out", tmp_path, *FAST, "--set", "nosuch=1")
    # the expansion reaches the per-method option check, which names the first registered method
    assert "has no option 'nosuch'" in one_error_line(result)


@pytest.mark.slow
def test_decathlon_layout_with_dataset_json_runs_end_to_end(tiny_synthetic, tmp_path):
    """The same cases renamed the Decathlon way (imagesTr/labelsTr + dataset_0.json) give the same data."""
    import shutil

    root = tmp_path / "decathlon"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for image in sorted((tiny_synthetic / "RawData" / "Training" / "img").glob("*.nii.gz")):
        cid = image.name[3:7]
        shutil.copy(image, root / "imagesTr" / f"BTCV_{cid}_0000.nii.gz")
        shutil.copy(tiny_synthetic / "RawData" / "Training" / "label" / f"label{cid}.nii.gz", root / "labelsTr" / f"BTCV_{cid}.nii.gz")
        training.append({"image": f"imagesTr/BTCV_{cid}_0000.nii.gz", "label": f"labelsTr/BTCV_{cid}.nii.gz"})
    (root / "dataset_0.json").write_text(json.dumps({"training": training}))
    check = invoke("data", "check", "--data-root", root)
    assert check.exit_code == 0 and "decathlon-json" in check.output
    result = invoke("run", "--methods", "nnunet", "--data", "12pct", "--repeats", "0", "--data-root", root, "--out", tmp_path / "r", *FAST)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "12pct" / "nnunet" / "repeat0" / "config.json").read_text())
    assert config["provenance"]["data_layout"] == "decathlon-json" and config["provenance"]["synthetic"] is False
    assert "BTCV at" in config["provenance"]["stamp"]


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_epoch_and_a_rerun_resumes(tiny_synthetic, tmp_path):
    """A real SIGINT to a real process after two epochs: exit 130 after checkpointing, then the same
    command finishes; the run's recorded cost is the sum of both sessions."""
    import csv
    import signal
    import subprocess
    import sys
    import time

    import torch

    from bench.runs.costs import read_sessions
    from bench.runs.files import SESSIONS_FILE, RunSummary

    out = tmp_path / "runs"
    args = [sys.executable, "-m", "bench.cli", "run", "--methods", "nnunet", "--data", "12pct", "--repeats", "0"]
    args += ["--data-root", str(tiny_synthetic), "--out", str(out), "--profile", "smoke", "--device", "cpu", "--epochs", "4"]
    run_dir = out / "12pct" / "nnunet" / "repeat0"
    log = run_dir / "log.jsonl"
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (log.exists() and len(log.read_text().splitlines()) >= 2) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    stopped_at = saved["epoch"]
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert 2 <= stopped_at < 4 and epochs == list(range(1, stopped_at + 1))
    assert not (run_dir / "summary.json").exists()

    rerun = invoke(*args[3:])  # the same command, in this process: a Python start-up less
    assert rerun.exit_code == 0, rerun.output
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, 5))
    first, second = read_sessions(run_dir / SESSIONS_FILE)
    assert (first.outcome, second.outcome) == ("stopped", "finished")
    assert first.evaluate_seconds is None and second.evaluate_seconds > 0
    # Each session trained its own epochs (Ctrl-C stops at an epoch's end: no step was taken twice)...
    assert first.steps * (4 - stopped_at) == second.steps * stopped_at > 0
    for session, trained in ((first, lines[:stopped_at]), (second, lines[stopped_at:])):
        assert session.train_seconds >= sum(line["seconds"] for line in trained) - 0.01  # plus loading and checkpoints
        assert session.peak_memory_train_mib > 0 and 0 < session.step_seconds_median < session.train_seconds
    # ... and the run's cost is their sum, in the summary and in costs.csv.
    cost = RunSummary.read(run_dir / "summary.json").cost
    assert cost["sessions"] == 2 and cost["train_seconds"] == round(first.train_seconds + second.train_seconds, 1)
    assert cost["steps"] == first.steps + second.steps and cost["peak_memory_train_mib"] > 0
    said = " ".join(rerun.output.split())
    assert f"costs: {out / 'costs.csv'} ({cost['device_hours']:.3g} device-hours for 1 run on {cost['device']})" in said
    with open(out / "costs.csv") as fh:
        [row] = list(csv.DictReader(fh))
    assert float(row["train_seconds"]) == cost["train_seconds"] and float(row["device_hours"]) == pytest.approx(cost["device_hours"])
