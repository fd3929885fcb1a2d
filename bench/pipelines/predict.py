"""``bench predict``: a finished run's network applied to any folder of images, with the run's own
preprocessing and sliding window, each label map written on its image's own grid (what
``nnUNetv2_predict`` does for nnU-Net). The network is rebuilt from the run's configuration (its
profile, options, label set and seed: a SAM method's frozen random toy ViT is the same again) and
loads the run's final weights; a SAM method trained on real SAM weights needs the same file again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from bench.console import plain, progress_bar
from bench.data.preprocess import preprocess_image
from bench.data.regrid import to_original_grid
from bench.data.volumes import is_nifti, read_volume, volume_stem
from bench.errors import DataError, UserError
from bench.evaluation.evaluate import predict_probabilities
from bench.io import write_nifti_gz
from bench.pipelines.checkpoint import load_weights
from bench.pipelines.harness import build_network
from bench.plan.profiles import Profile, profile_dict, resolve_profile
from bench.plan.weights import resolve_backbone_weights
from bench.runs.files import CHECKPOINT_FILE, CONFIG_FILE, ConfigFile, RunFileError, is_finished


@dataclass
class Predictor:
    """A finished run's network and the settings its predictions are made with."""

    network: torch.nn.Module
    profile: Profile
    device: str


def load_predictor(run_dir: Path, device: str, sam_checkpoint: Path | None = None) -> Predictor:
    """UserError for a folder that is not a finished run of the harness's trainer, or whose backbone
    weights cannot be had again."""
    from methods import get_method

    run_dir = Path(run_dir)
    if not is_finished(run_dir) or not (run_dir / CHECKPOINT_FILE).exists():
        raise UserError(
            f"{run_dir} is not a finished run with its weights ({CONFIG_FILE}, summary and {CHECKPOINT_FILE}); bench status shows why"
        )
    try:
        config = ConfigFile.read(run_dir / CONFIG_FILE)
    except RunFileError as exc:
        raise UserError(str(exc)) from None
    info = get_method(config.config.base_method)
    if info.pipeline is not None:
        raise UserError(f"{info.name} brings its own pipeline; predict with it (nnUNetv2_predict on the run's nnunet folder)")
    profile = resolve_profile(config.provenance.profile, has_cuda=device == "cuda").with_overrides(
        config.provenance.profile_overrides or {}
    )
    hashed = {k: v for k, v in profile_dict(profile).items() if k in config.config.profile}
    if _jsonable(hashed) != config.config.profile:
        raise UserError(
            f"{run_dir} was trained under settings this version of bench cannot rebuild; predict with the version that trained it"
        )
    backbone = None
    if info.backbone is not None:
        weights = resolve_backbone_weights(
            info.backbone, sam_checkpoint, profile.published_size, allow_random=config.config.weights_identity == "random"
        )
        if weights.identity != config.config.weights_identity:
            raise UserError(f"{run_dir} was trained on {config.config.weights}; pass the same file with --sam-checkpoint")
        backbone = weights.tensors()
    network = build_network(info.name, config.config, profile, config.config.hyperparameters, backbone)
    payload = torch.load(run_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    try:
        load_weights(network, payload, config.config_hash, run_dir / CHECKPOINT_FILE)
    except RuntimeError:
        raise UserError(f"{run_dir / CHECKPOINT_FILE} does not belong to the run's configuration") from None
    return Predictor(network.to(device).eval(), profile, device)


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=list))


def image_inputs(images: Path) -> list[Path]:
    """The images to segment in ``images``: its NIfTI files and its folders (one DICOM series each),
    or the folder itself when it holds one series and nothing else."""
    entries = sorted(p for p in Path(images).iterdir() if not p.name.startswith("."))
    found = [p for p in entries if is_nifti(p) or p.is_dir()]
    if not found and any(p.is_file() for p in entries):
        return [Path(images)]  # a series folder: its files are the slices
    if not found:
        raise UserError(f"no images in {images}: expected NIfTI files (.nii.gz, .nii) or folders of one DICOM series each")
    return found


def predict_folder(predictor: Predictor, images: Path, out: Path, console: Console) -> tuple[list[Path], list[str]]:
    """Label maps of every image in ``images`` (``image_inputs``) written to ``out`` as NIfTI under
    the image's name (a series folder's name + ``.nii.gz``), on the image's grid; returns (written
    files, one line per image that could not be read or predicted)."""
    inputs = image_inputs(images)
    out.mkdir(parents=True, exist_ok=True)
    profile, written, failures = predictor.profile, [], []
    with progress_bar(console) as progress:
        task = progress.add_task("predicting", total=len(inputs), status="")
        for path in inputs:
            try:
                volume = read_volume(path)
            except DataError as exc:
                failures.append(str(exc))
                progress.advance(task)
                continue
            image, affine = volume.array, volume.affine
            pre, pre_affine = preprocess_image(image, affine, profile.preprocess)
            probabilities = predict_probabilities(
                predictor.network, pre, profile.roi, profile.sw_overlap, profile.sw_batch_size, predictor.device
            )
            label = to_original_grid(probabilities, pre_affine, tuple(image.shape), affine)
            target = out / f"{volume_stem(path)}.nii.gz"
            write_nifti_gz(target, label.astype(np.uint8), affine)
            written.append(target)
            progress.advance(task)
    for line in failures:
        console.print(f"[red]skipped:[/red] {plain(line)}", highlight=False, soft_wrap=True)
    return written, failures
