"""A training run's resumable state (weights, optimizer, schedule, scaler, every random state),
saved atomically to checkpoint.pt with the one before kept as checkpoint.prev.pt; resuming from
the newest that reads, with unreadable ones moved aside; and the signal handling that stops at an
epoch's end so the checkpoint matches the epoch it records."""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.io import atomic_write, read_json, write_json
from bench.pipelines.augment import random_states
from bench.runs.files import CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, RECOVERED_FILE


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
            "transforms": [_numpy_state_to_torch(t.R.get_state()) for t in random_states(self.transform)],
        }

    def set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(_numpy_state_from_torch(state["numpy"]))
        random.setstate(_to_tuple(state["python"]))
        self.sampler_generator.set_state(state["sampler"])
        for t, s in zip(random_states(self.transform), state["transforms"], strict=True):
            t.R.set_state(_numpy_state_from_torch(s))

    def frozen_names(self) -> set[str]:
        return frozen_names(self.model)

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
        previous = path.with_name(PREVIOUS_CHECKPOINT_FILE)
        if finished:  # the final file keeps the weights only: a 90 M-parameter Adam state is 1 GB
            atomic_write(path, lambda fh: torch.save(payload, fh))
            previous.unlink(missing_ok=True)  # nothing resumes from it any more
            return
        payload |= {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.rng_state(),
        }
        # The latest becomes the previous before the new one is written: whatever damages the new
        # file (a kill mid-copy, a full disk), one readable checkpoint is left to resume from.
        if path.exists():
            os.replace(path, previous)
        atomic_write(path, lambda fh: torch.save(payload, fh))

    def load(self, path: Path, config_hash: str, payload: dict | None = None) -> bool:
        """Restore from a checkpoint of the same configuration (``payload``: its content, when
        already read); False when there is none."""
        if payload is None:
            if not path.exists():
                return False
            payload = torch.load(path, map_location="cpu", weights_only=True)
        load_weights(self.model, payload, config_hash, path)
        self.epoch = int(payload["epoch"])
        if not payload.get("finished"):
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.scaler.load_state_dict(payload["scaler"])
            self.set_rng_state(payload["rng"])
        return True


def frozen_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def load_weights(model: nn.Module, payload: dict, config_hash: str, path: Path) -> None:
    """A checkpoint's weights into ``model``: RuntimeError unless it is of the same configuration
    and holds every weight but the frozen ones (left out when saving)."""
    if payload.get("config_hash") != config_hash:
        raise RuntimeError(f"{path} belongs to a different configuration")
    missing, unexpected = model.load_state_dict(payload["model"], strict=False)
    lacking = sorted(set(missing) - frozen_names(model))
    if lacking or unexpected:
        raise RuntimeError(f"{path} does not match the model (missing {lacking[:3]}, unexpected {unexpected[:3]})")


class UnreadableCheckpoint(Exception):
    """A checkpoint file that PyTorch cannot read back (truncated, empty, not a checkpoint)."""


def read_checkpoint(path: Path, required: tuple[str, ...] = ("epoch", "model"), weights_only: bool = True) -> dict:
    """A checkpoint's content, or UnreadableCheckpoint saying why not (``required``: the keys a
    checkpoint of its kind has; nnU-Net's hold Python objects, read with ``weights_only=False``)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file cannot be resumed from
        first_sentence = " ".join(str(exc).split()).split(". ")[0][:200]  # PyTorch's reader adds a paragraph of advice
        raise UnreadableCheckpoint(f"{type(exc).__name__}: {first_sentence}") from None
    if not isinstance(payload, dict) or any(key not in payload for key in required):
        raise UnreadableCheckpoint(f"not a checkpoint of its kind (lacks {', '.join(k for k in required if k not in payload)})")
    return payload


def checkpoints_newest_first(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / CHECKPOINT_FILE, run_dir / PREVIOUS_CHECKPOINT_FILE) if p.exists()]


def newest_readable_checkpoint(run_dir: Path, notify: Callable[[str], None]) -> tuple[Path | None, dict | None]:
    """The harness's newest checkpoint of the run that reads, and its content (see ``first_readable``)."""
    return first_readable(checkpoints_newest_first(run_dir), run_dir, notify)


def first_readable(
    candidates: list[Path],
    run_dir: Path,
    notify: Callable[[str], None],
    read: Callable[[Path], dict] = read_checkpoint,
    epoch_key: str = "epoch",
) -> tuple[Path | None, dict | None]:
    """The first of ``candidates`` (newest first) that reads, and its content; every unreadable one
    before it is moved aside (never deleted: it may be all there is of a long run), said in one
    line through ``notify`` and recorded in the run's recovered.json for ``bench status``."""
    unreadable = []
    for path in (p for p in candidates if p.exists()):
        try:
            payload = read(path)
        except UnreadableCheckpoint as exc:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            aside = path.with_name(f"{path.name}.unreadable-{stamp}")
            os.replace(path, aside)
            unreadable.append((path, aside, str(exc)))
            continue
        found = (path, payload)
        break
    else:
        found = (None, None)
    if unreadable:
        path, payload = found
        resumed = f"resuming from {path.name} at epoch {payload[epoch_key]}" if path else "training from scratch"
        moved = "; ".join(f"{p.name} is unreadable ({why}), moved to {a.name}" for p, a, why in unreadable)
        notify(f"{run_dir}: {moved}; {resumed}")
        record = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "unreadable": [{"file": p.name, "moved_to": a.name, "error": why} for p, a, why in unreadable],
            "resumed_from": path.name if path else None,
            "epoch": int(payload[epoch_key]) if path else 0,
        }
        earlier = read_json(run_dir / RECOVERED_FILE) if (run_dir / RECOVERED_FILE).exists() else []
        write_json(run_dir / RECOVERED_FILE, [*earlier, record])
    return found


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
