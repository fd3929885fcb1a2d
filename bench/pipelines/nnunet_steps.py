"""nnU-Net v2's own pipeline for one planned run, step by step (the pipeline object is ``bench.pipelines.nnunetv2``).

For the run's draw: the training cases become an nnU-Net raw dataset and the test cases its test
images; nnunetv2's Python API extracts the fingerprint, plans (the method's planner preset) and
preprocesses; nnU-Net's trainer trains on all of them (fold "all") and nnU-Net's predictor predicts
the test images with its test-time mirroring. The harness then scores the predictions with its own
metrics in the original label space and writes the same run files as every run.

Where things live: raw and preprocessed data under the cache (``<cache>/nnunetv2/<key>/``, one
nnU-Net dataset per draw, so two runs never share a dataset id), nnU-Net's results under the run
folder (``RUN/nnunet/``). nnU-Net reads its folders from environment variables when it uses them;
they are set for the duration of each step, so the user sets none.

Raw data: with the paper profile, links to the original NIfTI files (copies where links cannot be
made), so nnU-Net resamples and normalises the files themselves and its predictions come back on
each label file's grid. With the smoke profile, the profile's preprocessed volumes (coarse voxels,
HU window scaled to [0, 1]) written as NIfTI, and nnU-Net's class probabilities on that grid are
taken back to each label file's grid like every method's.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

DATASET_NAME = "Dataset501_BTCVbench"
DATASET_ID = 501
CONFIGURATION = "3d_fullres"
# nnU-Net's checkpoints, in the order its own --c resumes from them, and the previous latest we keep.
FINAL_CHECKPOINT, LATEST_CHECKPOINT, BEST_CHECKPOINT = "checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"
PREVIOUS_CHECKPOINT = "checkpoint_latest.prev.pth"
NNUNET_DIR = "nnunet"  # inside the run folder: nnU-Net's results (checkpoints, its own log) and predictions


def case_name(case_id: str) -> str:
    return f"BTCV_{case_id}"


@contextlib.contextmanager
def nnunet_folders(raw: Path, preprocessed: Path, results: Path, augmentation_workers: int) -> Iterator[None]:
    """nnU-Net's environment for one step, restored afterwards."""
    wanted = {
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(preprocessed),
        "nnUNet_results": str(results),
        "nnUNet_n_proc_DA": str(augmentation_workers),
    }
    before = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _link_or_copy(source: Path, target: Path) -> None:
    import shutil

    target.unlink(missing_ok=True)
    try:
        target.symlink_to(Path(source).resolve())
    except OSError:
        shutil.copyfile(source, target)


def _export_original(case, image: Path, label: Path | None, labels) -> None:
    """A case's own files for nnU-Net: linked where nnU-Net reads them as they are (NIfTI, image and
    label on one grid); otherwise written as NIfTI on the image's grid (a DICOM series, a label
    stored in another voxel order), as nnU-Net wants its inputs."""
    from bench.data.btcv import read_pair
    from bench.data.labels import LabelSet
    from bench.data.volumes import is_nifti, read_volume, same_grid
    from bench.io import write_nifti_gz

    if is_nifti(case.image) and (label is None or (is_nifti(case.label) and same_grid(*_header(case.image), *_header(case.label)))):
        _link_or_copy(case.image, image)
        if label is not None:
            _link_or_copy(case.label, label)
        return
    if label is None:
        volume = read_volume(case.image)
        write_nifti_gz(image, volume.array, volume.affine)
        return
    pixels, aligned, affine = read_pair(case, LabelSet(tuple(labels)))
    write_nifti_gz(image, pixels, affine)
    write_nifti_gz(label, aligned.astype(np.uint8), affine)


def _header(path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    import nibabel as nib

    header = nib.load(str(path))
    return header.affine, tuple(header.shape[:3])


def export_raw_dataset(root: Path, train: Sequence, test: Sequence, coarse: dict | None, organs: Sequence[str]) -> Path:
    """An nnU-Net raw dataset of the draw: imagesTr + labelsTr (the training cases), imagesTs (the
    test cases), dataset.json with ``organs`` (the run's label set, values 1..N). ``train``/``test``:
    dataset cases; ``coarse``: case id -> PreprocessedCase to write instead of linking the original
    files (smoke profile)."""
    from bench.io import write_nifti_gz

    folder = Path(root) / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case, images in [(c, "imagesTr") for c in train] + [(c, "imagesTs") for c in test]:
        image = folder / images / f"{case_name(case.case_id)}_0000.nii.gz"
        label = folder / "labelsTr" / f"{case_name(case.case_id)}.nii.gz"
        if coarse is None:
            _export_original(case, image, label if images == "imagesTr" else None, organs)
        else:
            pre = coarse[case.case_id]
            write_nifti_gz(image, pre.image[0].astype(np.float32), pre.affine)
            if images == "imagesTr":
                write_nifti_gz(label, pre.label[0].astype(np.uint8), pre.affine)
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{organ: i + 1 for i, organ in enumerate(organs)}},
        "numTraining": len(train),
        "file_ending": ".nii.gz",
        "name": "BTCV draw exported by sam3d-bench",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return folder


def plan_and_preprocess(preprocessed: Path, planner: str) -> dict:
    """nnU-Net's fingerprint, plan and 3d_fullres preprocessing (skipped when already done); its plans."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    from methods import NNUNET_PLANNERS

    planner_class, identifier = NNUNET_PLANNERS[planner]
    plans_file = Path(preprocessed) / DATASET_NAME / f"{identifier}.json"
    done = Path(preprocessed) / DATASET_NAME / ".bench-preprocessed"
    if not done.exists():
        with quiet():
            extract_fingerprints([DATASET_ID], num_processes=1, show_progress_bar=False, verbose=False)
            plan_experiments([DATASET_ID], planner_class)
            preprocess([DATASET_ID], identifier, configurations=(CONFIGURATION,), num_processes=(1,), show_progress_bar=False)
        done.write_text(identifier + "\n")
    return json.loads(plans_file.read_text())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """nnU-Net prints its progress on stdout; the harness's own progress is what the user reads."""
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def plan_summary(plans: dict) -> dict:
    """What nnU-Net decided, for the run's provenance: patch, spacing, batch, stages, network."""
    config = plans["configurations"][CONFIGURATION]
    arch = config["architecture"]
    return {
        "plans_name": plans.get("plans_name"),
        "configuration": CONFIGURATION,
        "patch_size": list(config["patch_size"]),
        "spacing_mm": list(config["spacing"]),
        "batch_size": config["batch_size"],
        "n_stages": arch["arch_kwargs"]["n_stages"],
        "features_per_stage": list(arch["arch_kwargs"]["features_per_stage"]),
        "network": arch["network_class_name"],
        "axis_order": "nnU-Net's (SimpleITK: z, y, x)",
    }


def trainer_class(epochs: int, iterations_per_epoch: int, checkpoint_every: int):
    """nnU-Net's trainer with the run's schedule (its defaults: 1000 epochs of 250 iterations)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    cuda = torch.device("cuda")

    class BenchTrainer(nnUNetTrainer):
        # nnU-Net records its trainer's __init__ arguments by name: the signature must stay its own.
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = cuda):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations_per_epoch
            self.num_val_iterations_per_epoch = max(1, min(50, iterations_per_epoch // 5))
            self.save_every = checkpoint_every
            self.step_seconds: list[float] = []  # this session's optimisation steps (the run's recorded cost)

        def train_step(self, batch: dict) -> dict:
            # nnU-Net's step ends by copying the loss to the host, after the update's kernels have run.
            started = time.monotonic()
            result = super().train_step(batch)
            self.step_seconds.append(time.monotonic() - started)
            return result

        def save_checkpoint(self, filename: str) -> None:
            # nnU-Net writes its checkpoint in place, over the only one it keeps: a kill or a full disk
            # mid-write would leave nothing to resume from. Written aside and moved into place, with
            # the latest kept as the previous (bench.pipelines.checkpoint reads them newest first).
            path = Path(filename)
            partial = path.with_name(f".{path.name}.partial")
            super().save_checkpoint(str(partial))
            if not partial.exists():  # another rank, or checkpointing disabled
                return
            if path.name == LATEST_CHECKPOINT and path.exists():
                os.replace(path, path.with_name(PREVIOUS_CHECKPOINT))
            os.replace(partial, path)

    return BenchTrainer


def nnunet_log_lines(trainer) -> list:
    """log.jsonl's epochs from nnU-Net's own per-epoch log (training loss, learning rate, epoch time,
    and its pseudo-Dice on the validation batches as ``val_dice``)."""
    from bench.runs.files import LogLine

    keys = ("train_losses", "lrs", "mean_fg_dice", "epoch_start_timestamps", "epoch_end_timestamps")
    log = {key: trainer.logger.get_value(key, step=None) for key in keys}
    lines = []
    for epoch, loss in enumerate(log.get("train_losses", [])):
        try:
            seconds = log["epoch_end_timestamps"][epoch] - log["epoch_start_timestamps"][epoch]
            lines.append(
                LogLine(epoch + 1, float(loss), float(log["lrs"][epoch]), round(float(seconds), 2), float(log["mean_fg_dice"][epoch]))
            )
        except (KeyError, IndexError):
            break
    return lines


def predict_test_images(trainer, images: Path, out: Path, save_probabilities: bool, mirroring: bool) -> None:
    """nnU-Net's predictor with the trained network and its default overlap; test-time mirroring
    along the axes the trainer allows unless ``mirroring`` is false."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    with quiet():
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring, device=trainer.device, allow_tqdm=False)
    predictor.manual_initialization(
        trainer.network,
        trainer.plans_manager,
        trainer.configuration_manager,
        [trainer.network.state_dict()],
        trainer.dataset_json,
        type(trainer).__name__,
        trainer.inference_allowed_mirroring_axes,
    )
    Path(out).mkdir(parents=True, exist_ok=True)  # nnU-Net's sequential predictor expects it
    with quiet():
        if trainer.device.type == "cuda":
            predictor.predict_from_files(
                str(images), str(out), save_probabilities=save_probabilities, overwrite=True, num_processes_segmentation_export=2
            )
        else:  # on a CPU, worker processes (each importing torch anew) cost more than they save
            predictor.predict_from_files_sequential(str(images), str(out), save_probabilities=save_probabilities, overwrite=True)
