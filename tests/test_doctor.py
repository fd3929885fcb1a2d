"""bench doctor: each check's verdict on a setup made to pass or fail it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bench.costs import doctor, doctor_fit
from bench.data.abdomen import case_grid, synthesize_case
from bench.data.btcv import locate_dataset
from bench.data.preprocess import cache_bytes_upper_bound, load_or_preprocess
from bench.data.volumes import read_grid
from bench.plan.profiles import PROFILES
from tests.conftest import invoke


def by_name(payload: dict) -> dict:
    return {c["name"]: c for c in payload["checks"]}


@pytest.mark.slow
def test_cpu_doctor_passes_and_times_one_step_per_method(monkeypatch):
    monkeypatch.setattr("bench.plan.weights.cached_hub_weights", lambda spec: None)  # as on a machine without them
    result = invoke("doctor", "--device", "cpu", "--methods", "unetr,tpmamba", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    checks = by_name(payload)
    assert payload["ok"] and payload["device"] == "cpu" and payload["profile"] == "smoke"
    assert checks["CUDA"]["detail"] == "not used (--device cpu)"
    assert checks["mamba-ssm"]["status"] == "ok" and "PyTorch selective scan runs" in checks["mamba-ssm"]["detail"]
    assert checks["packages"]["status"] == "ok" and checks["packages"]["data"]["versions"]["torch"] == torch.__version__.split("+")[0]
    assert checks["data"]["status"] == "ok" and "synthetic" in checks["data"]["detail"]
    for name in ("unetr", "tpmamba"):
        step = checks[f"step {name}"]
        assert step["status"] == "ok", step
        assert step["data"]["train_step_s"] > 0 and 0 < step["data"]["peak_mib"] < step["data"]["capacity_mib"]
    # The SAM method needs pretrained weights for paper runs; none are here, which is a warning only.
    assert checks["SAM weights"]["status"] == "warn" and "--sam-checkpoint" in checks["SAM weights"]["action"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the verdict when CUDA is absent")
def test_asking_for_cuda_without_it_fails_with_exit_code_1():
    result = invoke("doctor", "--device", "cuda", "--methods", "unetr", "--json")
    assert result.exit_code == 1
    checks = by_name(json.loads(result.stdout))
    assert checks["CUDA"]["status"] == "fail" and "no CUDA device" in checks["CUDA"]["detail"]
    assert checks["training steps"]["status"] == "fail"


def test_unknown_method_is_a_one_line_error():
    result = invoke("doctor", "--methods", "unetr,nosuch")
    assert result.exit_code == 2 and "nosuch" in result.output


def test_a_step_that_raises_fails_naming_the_error(monkeypatch):
    import bench.costs.speed

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(bench.costs.speed, "measure_training_step", broken)
    (check,) = doctor_fit.training_step_checks(["unetr"], PROFILES["smoke"], "cpu")
    assert check.status == "fail" and "no kernel image" in check.detail


def test_an_unmet_requirement_fails_the_package_check(monkeypatch):
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "1.0" if name == "torch" else real(name))
    check = doctor.package_check()
    assert check.status == "fail" and "torch 1.0 does not satisfy >=2.2" in check.detail


def test_mamba_ssm_not_installed_on_cuda_is_a_warning_not_a_failure():
    from bench.provenance import installed_version

    if installed_version("mamba-ssm") is not None:
        pytest.skip("mamba-ssm is installed here")
    check = doctor.mamba_check("cuda")
    assert check.status == "warn" and "pip install -e '.[cuda]'" in check.action


def test_a_data_folder_with_a_missing_label_fails(tmp_path, tiny_synthetic):
    root = tmp_path / "btcv"
    shutil.copytree(tiny_synthetic, root)
    (root / "RawData" / "Training" / "label" / "label0036.nii.gz").unlink()
    result = invoke("doctor", "--data-root", root, "--methods", "none", "--json")
    assert result.exit_code == 1
    data = by_name(json.loads(result.stdout))["data"]
    assert data["status"] == "fail" and "0036" in data["detail"] and "bench data check" in data["action"]


def test_disk_check_fails_when_the_cache_disk_is_too_small(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert doctor_fit.disk_check(tmp_path / "cache", 1024, 1.0, 30).status == "ok"
    check = doctor_fit.disk_check(tmp_path / "cache", 2 * free, 1.0, 30)  # a folder not made yet: its disk counts
    assert check.status == "fail" and "BENCH_CACHE_DIR" in check.action


def test_the_cache_estimate_bounds_what_preprocessing_writes(tmp_path, tiny_synthetic):
    dataset = locate_dataset(tiny_synthetic, synthetic=True)
    settings = PROFILES["smoke"].preprocess
    for cid in ("0001", "0035"):
        case = dataset.cases[cid]
        load_or_preprocess(case, settings, tmp_path)
        written = (tmp_path / f"{cid}.npz").stat().st_size
        bound = cache_bytes_upper_bound([read_grid(case.image)], settings)
        # An upper bound, but not a loose one: the body crop removes the air around the abdomen.
        assert written <= bound < 4 * written


def test_the_synthetic_grid_is_the_one_synthesis_writes():
    for cid in ("0002", "0038"):
        image, _, affine = synthesize_case(cid, 6.0)
        shape, zooms = case_grid(cid, 6.0)
        assert image.shape == shape
        np.testing.assert_allclose(np.abs(np.diag(affine))[:3], zooms)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_doctor_checks_the_gpu_and_the_fused_scan():
    result = invoke("doctor", "--device", "cuda", "--methods", "tpmamba,unetr", "--json")
    checks = by_name(json.loads(result.stdout))
    assert checks["GPU"]["status"] == "ok" and checks["precision"]["status"] in ("ok", "warn")
    assert checks["mamba-ssm"]["status"] in ("ok", "warn"), checks["mamba-ssm"]  # warn: not installed
    for name in ("tpmamba", "unetr"):
        assert checks[f"step {name}"]["data"]["memory_kind"] == "cuda_allocated"


def test_a_cpu_step_past_the_memory_available_is_stopped_not_killed(monkeypatch):
    # What the machine has is made smaller than any step needs: the step must end as a failed
    # check, where without the limit the kernel's OOM killer would end the whole process.
    monkeypatch.setattr(doctor_fit, "memory_capacity_mib", lambda device: 20.0)
    checks = doctor_fit.training_step_checks(["vnet", "unetr"], PROFILES["smoke"], "cpu")
    assert [c.status for c in checks] == ["fail", "fail"]
    assert "needs more than 90% of the 20 MiB available" in checks[0].detail and "smaller --roi" in checks[0].action


def test_the_memory_limit_holds_where_sigint_is_ignored(monkeypatch):
    # A background job or nohup starts with SIGINT ignored; the watcher's interrupt must still stop
    # the step (it once came back "warn" there, the step having run on past the limit).
    import signal

    monkeypatch.setattr(doctor_fit, "memory_capacity_mib", lambda device: 20.0)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        checks = doctor_fit.training_step_checks(["unetr"], PROFILES["smoke"], "cpu")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # what the caller had is put back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [c.status for c in checks] == ["fail"] and "needs more than 90% of the 20 MiB available" in checks[0].detail


def test_memory_verdict_keeps_headroom():
    assert doctor_fit.memory_verdict(800, 1000) == "ok"
    assert doctor_fit.memory_verdict(950, 1000) == "warn"
