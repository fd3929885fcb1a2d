"""The paper's training protocol, identical for every method, with atomic checkpoints and resume.

DiceCE loss, AdamW, cosine decay of the learning rate to 0 over all iterations, random crops
balanced between foreground and background centres, flips and intensity/contrast augmentation,
one training volume per step whose ``crops_per_case`` crops form the batch (1 in the paper
profile, 2 in the smoke profile), mixed precision on CUDA. Validation Dice is computed on the test
cases only to draw convergence curves: the model that is scored is always the last epoch's, never
one selected on it.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import distributed
from bench.config import Profile
from bench.data.preprocess import PreprocessedCase
from bench.device import autocast_for, grad_scaler_for
from bench.evaluate import evaluate_cases
from bench.io import atomic_write
from bench.losses import supervised_loss
from bench.metrics import nanmean
from bench.runfiles import CHECKPOINT_FILE, LOG_FILE, LogLine, read_log


def train_transforms(roi: int, crops_per_case: int = 1):
    from monai.transforms import (
        Compose,
        FgBgToIndicesd,
        RandAdjustContrastd,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    keys = ("image", "label")
    return Compose(
        [
            SpatialPadd(keys=keys, spatial_size=(roi,) * 3),
            # Computed once while caching: searching the label for every crop is 100x slower.
            FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg", image_key="image", image_threshold=0.0),
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=(roi,) * 3,
                pos=1,
                neg=1,
                num_samples=crops_per_case,
                fg_indices_key="label_fg",
                bg_indices_key="label_bg",
            ),
            RandFlipd(keys=keys, prob=0.1, spatial_axis=0),
            RandFlipd(keys=keys, prob=0.1, spatial_axis=1),
            RandFlipd(keys=keys, prob=0.1, spatial_axis=2),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
        ]
    )


def _randomizable(transform) -> list:
    """Every random state in a transform chain, including those of wrapped inner transforms
    (RandCropByPosNegLabeld draws from its cropper's generator, not its own)."""
    from monai.transforms import Compose, Randomizable

    found: list = []
    seen: set[int] = set()

    def visit(obj) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Compose):
            for t in obj.transforms:
                visit(t)
            return
        if isinstance(obj, Randomizable):
            found.append(obj)
            for value in vars(obj).values():
                if isinstance(value, Randomizable | Compose):
                    visit(value)

    visit(transform)
    return found


def _numpy_state_to_torch(state: tuple) -> tuple:
    return (state[0], torch.from_numpy(state[1].astype(np.int64)), *state[2:])


def _numpy_state_from_torch(state) -> tuple:
    return (state[0], state[1].numpy().astype(np.uint32), *state[2:])


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler_generator: torch.Generator
    transform: object
    epoch: int = 0  # completed epochs

    def rng_state(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_torch(np.random.get_state()),
            "python": random.getstate(),
            "sampler": self.sampler_generator.get_state(),
            "transforms": [_numpy_state_to_torch(t.R.get_state()) for t in _randomizable(self.transform)],
        }

    def set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(_numpy_state_from_torch(state["numpy"]))
        random.setstate(_to_tuple(state["python"]))
        self.sampler_generator.set_state(state["sampler"])
        for t, s in zip(_randomizable(self.transform), state["transforms"], strict=True):
            t.R.set_state(_numpy_state_from_torch(s))

    def frozen_names(self) -> set[str]:
        return {name for name, p in self.model.named_parameters() if not p.requires_grad}

    def save(self, path: Path, config_hash: str, finished: bool = False) -> None:
        # Frozen weights (a SAM backbone) never change and are rebuilt from their source on resume:
        # leaving them out keeps a SAM method's checkpoint at its few trainable megabytes.
        frozen = self.frozen_names()
        payload = {
            "config_hash": config_hash,
            "epoch": self.epoch,
            "finished": finished,
            "model": {k: v for k, v in self.model.state_dict().items() if k not in frozen},
        }
        if not finished:  # the final file keeps the weights only: a 90 M-parameter Adam state is 1 GB
            payload |= {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": self.rng_state(),
            }
        atomic_write(path, lambda fh: torch.save(payload, fh))

    def load(self, path: Path, config_hash: str) -> bool:
        """Restore from a checkpoint of the same configuration; False when there is none."""
        if not path.exists():
            return False
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("config_hash") != config_hash:
            raise RuntimeError(f"{path} belongs to a different configuration")
        missing, unexpected = self.model.load_state_dict(payload["model"], strict=False)
        if unexpected or set(missing) - self.frozen_names():
            raise RuntimeError(
                f"{path} does not match the model (missing {sorted(set(missing) - self.frozen_names())[:3]}, unexpected {unexpected[:3]})"
            )
        self.epoch = int(payload["epoch"])
        if not payload.get("finished"):
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.scaler.load_state_dict(payload["scaler"])
            self.set_rng_state(payload["rng"])
        return True


def _to_tuple(value):
    return tuple(_to_tuple(v) for v in value) if isinstance(value, list | tuple) else value


class StopRequested:
    """Set by the first SIGINT/SIGTERM; training stops at the end of the epoch it is in."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def stop_at_epoch_end(notify: Callable[[str], None] | None = None) -> Iterator[StopRequested]:
    """First Ctrl-C (or SIGTERM from a scheduler) finishes the epoch and checkpoints; a second stops at once.

    Stopping mid-epoch would leave weights, optimizer and schedule ahead of the recorded epoch, so
    a resumed run would differ from an uninterrupted one.
    """
    stop = StopRequested()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        if notify is not None:
            notify("stopping after this epoch to checkpoint it; interrupt again to stop now")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters as AdamW groups. A parameter marked ``_no_weight_decay`` (mamba-ssm's
    convention, e.g. Mamba's ``A_log`` and ``D``) is put in a group without weight decay."""
    decayed, exempt = [], []
    for param in model.parameters():
        if param.requires_grad:
            (exempt if getattr(param, "_no_weight_decay", False) else decayed).append(param)
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    return groups


def training_step(
    network: nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: str,
) -> float:
    """One optimisation step (forward under the device's autocast, loss, backward, scaled optimizer
    step); returns the loss. ``bench speed`` times exactly this function.

    A loss that is not finite raises FloatingPointError before the step: stepping on would overwrite
    good weights with NaN.
    """
    with autocast_for(device):
        logits = network(image)
    loss = supervised_loss(loss_fn, logits, label)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"loss is {value}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return value


def cosine_to_zero(total_steps: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _truncate_log(log_path: Path, epochs_kept: int) -> None:
    """Drop log lines of epochs after the checkpoint: they will be trained (and logged) again."""
    if not log_path.exists():
        return
    lines = read_log(log_path)
    kept = [line for line in lines if line.epoch <= epochs_kept]
    if len(kept) != len(lines) or len(lines) != len(log_path.read_text().splitlines()):
        atomic_write(log_path, lambda fh: fh.write("".join(f"{line.to_json()}\n" for line in kept).encode()))


def steps_per_epoch(n_train_cases: int, profile: Profile) -> int:
    """Steps one process takes per epoch: an epoch is at least one crop set per training case."""
    steps = max(n_train_cases, profile.min_iterations_per_epoch)
    return math.ceil(steps / distributed.world_size())


def train(
    model: nn.Module,
    train_cases: Sequence[PreprocessedCase],
    val_cases: Sequence[PreprocessedCase],
    profile: Profile,
    device: str,
    run_dir: Path,
    config_hash: str,
    seed: int,
    on_step: Callable[[int, int, float, float], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainState:
    """Train (or resume) until profile.epochs; returns the final state. Writes checkpoint.pt and log.jsonl."""
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    # Under torchrun each rank draws its own crops (rank 0 keeps the single-process seed) and an
    # epoch's steps are shared out, so an epoch still sees as many crops as in one process.
    main = distributed.is_main()
    rank_seed = seed + 7919 * distributed.rank()
    set_determinism(seed=rank_seed)
    transform = train_transforms(profile.roi, profile.crops_per_case)
    transform.set_random_state(seed=rank_seed)
    data = [{"image": c.image, "label": c.label} for c in train_cases]
    dataset = CacheDataset(data, transform=transform, cache_rate=1.0, num_workers=0, progress=False)
    per_epoch = steps_per_epoch(len(train_cases), profile)
    generator = torch.Generator().manual_seed(rank_seed)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=False, num_samples=per_epoch, generator=generator)
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=profile.num_workers)

    model.to(device)
    optimizer = torch.optim.AdamW(optimizer_groups(model, profile.weight_decay), lr=profile.lr)
    total_steps = profile.epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_to_zero(total_steps))
    scaler = grad_scaler_for(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    state = TrainState(model, optimizer, scheduler, scaler, generator, transform)
    # The module that steps; state.model stays unwrapped for saving.
    network = distributed.wrap(model, device, (profile.crops_per_case, 1, *(profile.roi,) * 3))

    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT_FILE
    log_path = run_dir / LOG_FILE
    if state.load(checkpoint, config_hash) and not main:
        # The checkpoint holds rank 0's random state; the other ranks must not replay its crops.
        fresh = rank_seed + 100_003 * state.epoch
        generator.manual_seed(fresh)
        transform.set_random_state(seed=fresh % 2**32)
        torch.manual_seed(fresh)
    if main:
        _truncate_log(log_path, state.epoch)
    last_save = time.monotonic()
    model.train()
    with stop_at_epoch_end(notify) as stop:
        while state.epoch < profile.epochs:
            started = time.monotonic()
            losses = []
            for batch in loader:
                # Plain tensors: MetaTensor's per-op bookkeeping costs a third of a CPU step.
                image = batch["image"].as_tensor().to(device)
                label = batch["label"].as_tensor().to(device)
                try:
                    loss = training_step(network, image, label, loss_fn, optimizer, scaler, device)
                except FloatingPointError as exc:  # the runner records the run as failed and goes on with the grid
                    raise FloatingPointError(f"{exc} at epoch {state.epoch + 1}, step {len(losses) + 1}: training diverged") from None
                scheduler.step()
                losses.append(loss)
                if on_step is not None:
                    on_step(state.epoch, len(losses), losses[-1], scheduler.get_last_lr()[0])
            state.epoch += 1
            epoch_loss, lr, seconds = float(np.mean(losses)), scheduler.get_last_lr()[0], round(time.monotonic() - started, 3)
            validate = state.epoch % profile.val_every == 0 or state.epoch == profile.epochs
            if not main:  # rank 0 validates, logs and checkpoints for everyone
                if stop.requested and state.epoch < profile.epochs:
                    raise KeyboardInterrupt
                continue
            val_dice = None
            if validate and val_cases:
                per_case = evaluate_cases(model, val_cases, profile.roi, profile.sw_overlap, profile.sw_batch_size, device, surface=False)
                val_dice = nanmean(m["dice"] for case in per_case for m in case["metrics"].values())
            with open(log_path, "a") as fh:
                fh.write(LogLine(state.epoch, epoch_loss, lr, seconds, val_dice).to_json() + "\n")
            due = time.monotonic() - last_save > profile.checkpoint_minutes * 60
            if validate or due or stop.requested or state.epoch == profile.epochs:
                state.save(checkpoint, config_hash)
                last_save = time.monotonic()
            if stop.requested and state.epoch < profile.epochs:
                raise KeyboardInterrupt
    return state
