"""nnU-Net v2's own pipeline as a ``bench.pipelines.lifecycle.Pipeline`` (``bench.pipelines.nnunet_steps``
drives nnU-Net's steps): the draw's folders, nnU-Net's plan, its training resumed from its own
checkpoint, log.jsonl from nnU-Net's per-epoch log, and its predictions on each label file's grid;
the lifecycle scores them and writes the run files every run has, with nnU-Net's plan in the
provenance."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.console import plain
from bench.evaluation.predictions import CasePrediction
from bench.pipelines.checkpoint import first_readable, read_checkpoint
from bench.pipelines.context import RunContext
from bench.pipelines.nnunet_steps import (
    BEST_CHECKPOINT,
    CONFIGURATION,
    DATASET_NAME,
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    NNUNET_DIR,
    PREVIOUS_CHECKPOINT,
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
from bench.plan.profiles import Profile
from bench.runs.files import LOG_FILE
from methods import NNUNET_V2_FACTS, build_nnunetv2, register_method


def predictions_on_reference(prediction_dir: Path, case, reference, coarse) -> np.ndarray:
    """nnU-Net's prediction of a test case as a label map on its label file's grid."""
    import nibabel as nib
    import torch

    from bench.data.regrid import to_original_grid

    name = case_name(case.case_id)
    if coarse is None:  # predicted on the original image's grid by nnU-Net itself, the label's in another voxel order or not
        from bench.data.volumes import onto_grid

        nifti = nib.load(str(Path(prediction_dir) / f"{name}.nii.gz"))
        return onto_grid(np.asarray(nifti.dataobj).astype(np.uint8), nifti.affine, reference.affine, reference.label.shape)
    with np.load(Path(prediction_dir) / f"{name}.npz") as npz:
        probabilities = npz["probabilities"]  # (C, z, y, x): SimpleITK's order of the coarse image
    probabilities = torch.from_numpy(np.ascontiguousarray(probabilities.transpose(0, 3, 2, 1)))
    return to_original_grid(probabilities, coarse[case.case_id].affine, reference.label.shape, reference.affine)


def draw_key(context: RunContext, planner: str) -> str:
    coarse = context.profile.own_pipeline_gets_preprocessed
    payload = {
        "data": context.config.data_identity,
        "train": list(context.train_ids),
        "test": list(context.test_ids),
        "raw": context.profile.preprocess.key() if coarse else "original files",
        "planner": planner,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class NNUNetRun:
    """One run of nnU-Net's pipeline, opened: the draw exported, planned and preprocessed, nnU-Net's
    trainer built (and resumed from its latest checkpoint)."""

    context: RunContext
    console: Console
    trainer: object
    raw: Path
    preprocessed: Path
    prediction_dir: Path
    coarse: dict | None
    workers: int
    epochs: int
    facts: dict | None = None
    spacing_mm: float | None = None

    @property
    def network(self):
        return self.trainer.network

    @property
    def step_seconds(self) -> list[float]:
        return self.trainer.step_seconds

    @property
    def counted_input(self) -> tuple[int, ...]:
        """The patch nnU-Net planned: its GMACs are counted there."""
        return tuple(self.facts["nnunetv2"]["patch_size"])

    def _folders(self):
        return nnunet_folders(self.raw, self.preprocessed, self.results, self.workers)

    @property
    def results(self) -> Path:
        return self.context.run_dir / NNUNET_DIR

    def train(self) -> None:
        final = Path(self.trainer.output_folder) / FINAL_CHECKPOINT
        with self._folders():
            if not final.exists():
                hyper = self.context.config.hyperparameters
                self.console.print(
                    f"  nnU-Net trains: {self.epochs} epochs of {hyper['iterations_per_epoch']} iterations on {self.trainer.device.type}"
                )
                with quiet():
                    self.trainer.run_training()
                # nnU-Net removes its latest checkpoint once the final one is written; the previous goes too.
                (Path(self.trainer.output_folder) / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)
            _write_log(self.context.run_dir / LOG_FILE, nnunet_log_lines(self.trainer))

    def predictions(self) -> Iterator[CasePrediction]:
        context = self.context
        mirroring = context.config.hyperparameters["mirroring"]
        with self._folders():
            predict_test_images(
                self.trainer,
                self.raw / DATASET_NAME / "imagesTs",
                self.prediction_dir,
                save_probabilities=self.coarse is not None,
                mirroring=mirroring,
            )
        for case_id in context.test_ids:
            case = context.originals[case_id]
            reference = context.reference(case_id)
            prediction = predictions_on_reference(self.prediction_dir, case, reference, self.coarse)
            if prediction.shape != reference.label.shape:
                raise ValueError(f"nnU-Net's prediction of case {case_id} has shape {prediction.shape}, its label {reference.label.shape}")
            yield CasePrediction(case_id, prediction, reference.label, reference.spacing_mm, reference)

    def finish(self) -> None:
        """nnU-Net keeps its own final checkpoint."""


class NNUNetV2Pipeline:
    """nnU-Net v2's own pipeline (see ``bench.pipelines.nnunet_steps``): export, plan, preprocess,
    train (resuming from nnU-Net's latest checkpoint), predict; scored in the original label space."""

    eval_spaces: tuple[str, ...] = ("original",)

    def needs_preprocessed(self, profile: Profile) -> bool:
        """Only where the profile hands it the harness's volumes instead of the original files."""
        return profile.own_pipeline_gets_preprocessed

    def open(self, context: RunContext, console: Console) -> NNUNetRun:
        import torch

        hyper = context.config.hyperparameters
        planner = hyper["planner"]
        # --epochs shortens every method's training, nnU-Net's too; its own schedule otherwise.
        epochs = context.profile_overrides.get("epochs") or hyper["epochs"]
        coarse_profile = self.needs_preprocessed(context.profile)
        root = context.cache_dir / "nnunetv2" / draw_key(context, planner)
        raw, preprocessed, results = root / "raw", root / "preprocessed", context.run_dir / NNUNET_DIR
        train_cases = [context.originals[c] for c in context.train_ids]
        test_cases = [context.originals[c] for c in context.test_ids]
        # The grid has preprocessed every case at the profile's spacing already.
        coarse = dict(context.preprocessed) if coarse_profile else None
        console.print(f"{plain(context.name)}: nnU-Net plans and preprocesses the draw's {len(train_cases)} cases")
        with nnunet_folders(raw, preprocessed, results, augmentation_workers=1):
            export_raw_dataset(raw, train_cases, test_cases, coarse, context.label_set.organs)
            plans = plan_and_preprocess(preprocessed, planner)
        workers = 0 if coarse_profile else int(os.environ.get("nnUNet_n_proc_DA", "8"))
        with nnunet_folders(raw, preprocessed, results, augmentation_workers=workers):
            dataset_json = json.loads((preprocessed / DATASET_NAME / "dataset.json").read_text())
            plans["continue_training"] = False  # nnU-Net's trainer takes this flag out of the plans
            checkpoint_every = 1 if coarse_profile else 50
            with quiet():
                trainer = trainer_class(epochs, hyper["iterations_per_epoch"], checkpoint_every)(
                    plans, CONFIGURATION, "all", dataset_json, torch.device(context.device)
                )
            folder = Path(trainer.output_folder)
            # nnU-Net's own resume order (its --c), with the previous latest we keep after the latest.
            candidates = [folder / name for name in (FINAL_CHECKPOINT, LATEST_CHECKPOINT, PREVIOUS_CHECKPOINT, BEST_CHECKPOINT)]
            found, _ = first_readable(
                candidates,
                context.run_dir,
                lambda msg: console.print(f"[yellow]{plain(msg)}[/yellow]"),
                read=lambda path: read_checkpoint(path, ("network_weights", "current_epoch"), weights_only=False),
                epoch_key="current_epoch",
            )
            with quiet():
                trainer.initialize()  # builds the planned network, its optimiser and loss
                if found is not None:
                    trainer.load_checkpoint(str(found))  # read again: this nnU-Net's load_checkpoint takes a path only
        return NNUNetRun(
            context,
            console,
            trainer,
            raw,
            preprocessed,
            results / "test_predictions",
            coarse,
            workers,
            epochs,
            # nnU-Net's version is in every run's provenance (bench.provenance.PACKAGES); its plan here.
            facts={"nnunetv2": plan_summary(plans), "data": str(root)},
            spacing_mm=float(plans["configurations"][CONFIGURATION]["spacing"][0]),  # nnU-Net's own (z) spacing
        )


NNUNET_V2 = NNUNetV2Pipeline()
# The method nnU-Net v2 is: its facts (methods.nnunetv2) with the pipeline that runs it. This module is
# this distribution's own entry point (pyproject.toml), loaded before any plugin's, as built in.
register_method("nnunetv2", pipeline=NNUNET_V2, **NNUNET_V2_FACTS)(build_nnunetv2)


def _write_log(path: Path, lines) -> None:
    from bench.io import atomic_write

    text = "".join(line.to_json() + "\n" for line in lines)
    atomic_write(path, lambda fh: fh.write(text.encode()))
