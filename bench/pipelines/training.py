"""The paper's training protocol, identical for every method, with atomic checkpoints and resume.

DiceCE loss, AdamW, cosine decay of the learning rate to 0 over all iterations (after a linear
warm-up over the first tenth in the smoke profile, none in the paper's), random crops
balanced between foreground and background centres, flips and intensity/contrast augmentation
(the paper profile; the smoke profile's 300 steps go without),
one training volume per step whose ``crops_per_case`` crops form the batch (1 in the paper
profile, 2 in the smoke profile), mixed precision on CUDA. Validation Dice is computed on the test
cases only to draw convergence curves: the model that is scored is always the last epoch's, never
one selected on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import distributed
from bench.data.settings import PreprocessedCase
from bench.device import autocast_for, grad_scaler_for
from bench.io import atomic_write
from bench.pipelines import ddp
from bench.pipelines.augment import train_transforms
from bench.pipelines.checkpoint import TrainState, checkpoints_newest_first, newest_readable_checkpoint, stop_at_epoch_end
from bench.pipelines.losses import supervised_loss
from bench.plan.profiles import Profile
from bench.runs.files import CHECKPOINT_FILE, LOG_FILE, LogLine, read_log


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


def cosine_to_zero(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """Learning-rate factor of each step: a linear rise over ``warmup_steps`` (1/w, 2/w, ... 1) times a
    cosine from 1 at step 0 to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        return cosine * min(1.0, (step + 1) / warmup_steps) if warmup_steps else cosine

    return factor


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
    validation: Callable[[nn.Module], float] | None,
    profile: Profile,
    device: str,
    run_dir: Path,
    config_hash: str,
    seed: int,
    on_step: Callable[[int, int, float, float, float], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainState:
    """Train (or resume) until profile.epochs; returns the final state. Writes checkpoint.pt and
    log.jsonl, with ``validation(model)`` (a Dice, e.g. ``bench.evaluation.evaluate.validation_dice``)
    every ``profile.val_every`` epochs when given. ``on_step(epoch, step, loss, lr, seconds)`` after
    every optimisation step, with the seconds the step took (``training_step``, not the loading)."""
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    # Under torchrun each rank draws its own crops (rank 0 keeps the single-process seed) and an
    # epoch's steps are shared out, so an epoch still sees as many crops as in one process.
    main = distributed.is_main()
    rank_seed = seed + 7919 * distributed.rank()
    set_determinism(seed=rank_seed)
    transform = train_transforms(profile.roi, profile.crops_per_case, profile.augment)
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
    warmup_steps = round(profile.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_to_zero(total_steps, warmup_steps))
    scaler = grad_scaler_for(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    state = TrainState(model, optimizer, scheduler, scaler, generator, transform)
    # The module that steps; state.model stays unwrapped for saving.
    network = ddp.wrap(model, device, (profile.crops_per_case, 1, *(profile.roi,) * 3))

    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT_FILE
    log_path = run_dir / LOG_FILE
    # Rank 0 moves unreadable checkpoints aside before any rank reads one.
    found, payload = newest_readable_checkpoint(run_dir, notify or print) if main else (None, None)
    distributed.barrier()
    if not main:
        found = next(iter(checkpoints_newest_first(run_dir)), None)
    if found is not None and state.load(found, config_hash, payload) and not main:
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
                step_started = time.monotonic()
                try:
                    loss = training_step(network, image, label, loss_fn, optimizer, scaler, device)
                except FloatingPointError as exc:  # the runner records the run as failed and goes on with the grid
                    raise FloatingPointError(f"{exc} at epoch {state.epoch + 1}, step {len(losses) + 1}: training diverged") from None
                if device == "cuda":  # the step's kernels are queued: its time is theirs once they have run
                    torch.cuda.synchronize()
                step_seconds = time.monotonic() - step_started
                scheduler.step()
                losses.append(loss)
                if on_step is not None:
                    on_step(state.epoch, len(losses), losses[-1], scheduler.get_last_lr()[0], step_seconds)
            state.epoch += 1
            epoch_loss, lr, seconds = float(np.mean(losses)), scheduler.get_last_lr()[0], round(time.monotonic() - started, 3)
            # Every val_every epochs only: the last epoch's model is scored on the same cases by the
            # evaluation that follows training, so validating it too would run that inference twice.
            validate = state.epoch % profile.val_every == 0
            if not main:  # rank 0 validates, logs and checkpoints for everyone
                if stop.requested and state.epoch < profile.epochs:
                    raise KeyboardInterrupt
                continue
            val_dice = None
            if validate and validation is not None:
                val_dice = validation(model)
            with open(log_path, "a") as fh:
                fh.write(LogLine(state.epoch, epoch_loss, lr, seconds, val_dice).to_json() + "\n")
            due = time.monotonic() - last_save > profile.checkpoint_minutes * 60
            if validate or due or stop.requested or state.epoch == profile.epochs:
                state.save(checkpoint, config_hash)
                last_save = time.monotonic()
            if stop.requested and state.epoch < profile.epochs:
                raise KeyboardInterrupt
    return state
