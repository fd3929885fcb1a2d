"""One run of a method whose pipeline is nnU-Net v2 (``bench.pipelines.nnunet_steps`` drives nnU-Net's
steps): the draw's folders, nnU-Net's training resumed from its own checkpoint, the predictions
scored in the original label space, and the run files every run has (config.json with nnU-Net's
plan and version in its provenance, log.jsonl from nnU-Net's per-epoch log, summary.json)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.pipelines.nnunet_steps import (
    CONFIGURATION,
    DATASET_NAME,
    NNUNET_DIR,
    case_name,
    export_raw_dataset,
    nnunet_folders,
    nnunet_log_lines,
    plan_and_preprocess,
    plan_summary,
    predict_test_images,
    quiet,
    trainer_class,
)


def predictions_on_reference(prediction_dir: Path, case, reference, coarse) -> np.ndarray:
    """nnU-Net's prediction of a test case as a label map on its label file's grid."""
    import nibabel as nib
    import torch

    from bench.data.preprocess import to_original_grid

    name = case_name(case.case_id)
    if coarse is None:  # predicted on the original image's grid by nnU-Net itself
        return np.asarray(nib.load(str(Path(prediction_dir) / f"{name}.nii.gz")).dataobj).astype(np.uint8)
    with np.load(Path(prediction_dir) / f"{name}.npz") as npz:
        probabilities = npz["probabilities"]  # (C, z, y, x): SimpleITK's order of the coarse image
    probabilities = torch.from_numpy(np.ascontiguousarray(probabilities.transpose(0, 3, 2, 1)))
    return to_original_grid(probabilities, coarse[case.case_id].affine, reference.label.shape, reference.affine)


def draw_key(run, grid, planner: str) -> str:
    coarse = grid.profile.own_pipeline_gets_preprocessed
    payload = {
        "data": run.config.data_identity,
        "train": list(run.train_ids),
        "test": list(run.test_ids),
        "raw": grid.profile.preprocess.key() if coarse else "original files",
        "planner": planner,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def execute_nnunet_run(run, grid, console):
    """One run of nnU-Net's own pipeline: export, plan, preprocess, train (resuming from nnU-Net's
    latest checkpoint), predict, score; writes config.json, log.jsonl and summary.json."""
    import torch

    from bench.console import plain
    from bench.data.source import cache_root
    from bench.errors import UserError
    from bench.evaluation.evaluate import reference_of, save_prediction
    from bench.evaluation.metrics import score_case
    from bench.runs.files import CONFIG_FILE, LOG_FILE, SUMMARY_FILE, CaseScores, ConfigFile, RunSummary
    from bench.runs.results import run_summary
    from bench.runs.state import clear_failure
    from methods import count_parameters, get_method

    summary_path = run.run_dir / SUMMARY_FILE
    if summary_path.exists():
        console.print(f"[dim]{plain(run.run_dir)}: finished earlier, skipped[/dim]")
        return RunSummary.read(summary_path)
    if run.config.eval_space != "original":
        raise UserError(f"{run.method} is scored in the original label space only (nnU-Net predicts on its own grid); drop --eval-space")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    clear_failure(run.run_dir)  # a retry: the old reason no longer describes this run
    hyper = run.config.hyperparameters
    planner = hyper["planner"]
    # --epochs shortens every method's training, nnU-Net's too; its own schedule otherwise.
    epochs = grid.request.epochs or hyper["epochs"]
    coarse_profile = grid.profile.own_pipeline_gets_preprocessed
    root = cache_root() / "nnunetv2" / draw_key(run, grid, planner)
    raw, preprocessed, results = root / "raw", root / "preprocessed", run.run_dir / NNUNET_DIR
    dataset = grid.dataset
    train_cases = [dataset.cases[c] for c in run.train_ids]
    test_cases = [dataset.cases[c] for c in run.test_ids]
    # The grid has preprocessed every case at the profile's spacing already.
    coarse = {c.case_id: grid.cases[c.case_id] for c in train_cases + test_cases} if coarse_profile else None
    device = torch.device(grid.device)
    started = time.monotonic()
    console.print(f"{plain(run.method)} {run.data} #{run.repeat}: nnU-Net plans and preprocesses the draw's {len(train_cases)} cases")
    with nnunet_folders(raw, preprocessed, results, augmentation_workers=1):
        export_raw_dataset(raw, train_cases, test_cases, coarse)
        plans = plan_and_preprocess(preprocessed, planner)
    workers = 0 if coarse_profile else int(os.environ.get("nnUNet_n_proc_DA", "8"))
    with nnunet_folders(raw, preprocessed, results, augmentation_workers=workers):
        dataset_json = json.loads((preprocessed / DATASET_NAME / "dataset.json").read_text())
        plans["continue_training"] = False  # nnU-Net's trainer takes this flag out of the plans
        checkpoint_every = 1 if coarse_profile else 50
        with quiet():
            trainer = trainer_class(epochs, hyper["iterations_per_epoch"], checkpoint_every)(
                plans, CONFIGURATION, "all", dataset_json, device
            )
        final = Path(trainer.output_folder) / "checkpoint_final.pth"
        latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
        with quiet():
            trainer.initialize()  # builds the planned network, its optimiser and loss
            if final.exists():
                trainer.load_checkpoint(str(final))
            elif latest.exists():
                trainer.load_checkpoint(str(latest))  # nnU-Net's continue_training
        config_path = run.run_dir / CONFIG_FILE
        if not config_path.exists():
            total, trainable = count_parameters(trainer.network)
            # nnU-Net's version is in every run's provenance (bench.provenance.PACKAGES); its plan here.
            title = get_method(run.base_method).title
            provenance = replace(grid.provenance, pipeline={"nnunetv2": plan_summary(plans), "data": str(root)}, method_title=title)
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            ConfigFile(run.config, run.hash, total, trainable, provenance, created).write(config_path)
        if not final.exists():
            console.print(f"  nnU-Net trains: {epochs} epochs of {hyper['iterations_per_epoch']} iterations on {device.type}")
            with quiet():
                trainer.run_training()
        _write_log(run.run_dir / LOG_FILE, nnunet_log_lines(trainer))
        train_seconds = time.monotonic() - started
        started = time.monotonic()
        prediction_dir = results / "test_predictions"
        predict_test_images(
            trainer, raw / DATASET_NAME / "imagesTs", prediction_dir, save_probabilities=coarse is not None, mirroring=hyper["mirroring"]
        )
    per_case = []
    for case in test_cases:
        reference = reference_of(dataset, case.case_id)
        prediction = predictions_on_reference(prediction_dir, case, reference, coarse)
        if prediction.shape != reference.label.shape:
            raise ValueError(f"nnU-Net's prediction of case {case.case_id} has shape {prediction.shape}, its label {reference.label.shape}")
        if grid.request.save_predictions:
            save_prediction(run.run_dir, case.case_id, prediction, reference)
        per_case.append(
            CaseScores(case.case_id, score_case(prediction, reference.label, reference.spacing_mm, run.config.nsd_tolerance_mm))
        )
    seconds = {"train_this_session": round(train_seconds, 1), "evaluate": round(time.monotonic() - started, 1)}
    spacing = float(plans["configurations"][CONFIGURATION]["spacing"][0])  # nnU-Net's own (z) spacing
    summary = run_summary(run, grid.provenance, grid.profile.name, per_case, spacing_mm=spacing, seconds=seconds, processes=1)
    summary.write(summary_path)
    return summary


def _write_log(path: Path, lines) -> None:
    from bench.io import atomic_write

    text = "".join(line.to_json() + "\n" for line in lines)
    atomic_write(path, lambda fh: fh.write(text.encode()))
