"""What each method costs to train and run on the current device.

Per method: the median time of the trainer's own training step (``bench.pipelines.training.training_step``:
forward, DiceCE loss, backward, AdamW step with its gradient scaler, on the profile's batch of crops,
AMP on CUDA) after warm-up steps; the time of evaluation's own sliding-window call
(``bench.evaluation.evaluate.predict_case``, the profile's overlap and window batch) over a volume twice the
crop in-plane; peak memory while both run (CUDA: the allocator's peak; CPU: the process's peak
resident set, reset before each method where Linux allows it); and, once, the throughput of the
training data pipeline (crops per second from a cached volume), so a user sees whether the loader
can keep up with the steps. CUDA timings synchronise before reading the clock.
"""

from __future__ import annotations

import math
import resource
import statistics
import time

import numpy as np
import torch

from bench.device import grad_scaler_for
from bench.evaluation.evaluate import predict_case
from bench.memory import peak_memory, resident_mib
from bench.pipelines.training import optimizer_groups, training_step
from bench.plan.profiles import PROFILES


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def loader_crops_per_second(roi: int, crops_per_case: int, augment: bool = True, seconds: float = 2.0) -> float:
    """Crops per second of the training transforms (with or without augmentation, as the profile
    trains) on one cached body-sized volume."""
    from bench.pipelines.augment import train_transforms

    rng = np.random.default_rng(0)
    shape = (1, 2 * roi, 2 * roi, int(1.5 * roi))
    label = np.zeros(shape, np.uint8)
    label[0, roi // 2 : roi, roi // 2 : roi, roi // 4 : roi // 2] = 6
    case = {"image": rng.random(shape, dtype=np.float32), "label": label}
    transform = train_transforms(roi, crops_per_case, augment)
    cached = transform(case, end=2)  # pad + foreground/background indices: the cached stage
    produced, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        produced += len(transform(dict(cached), start=2))
    return produced / (time.monotonic() - started)


def measure_training_step(
    name: str, size: str, roi: int, crops: int, device: str, steps: int = 5, warmup: int = 2
) -> tuple[torch.nn.Module, dict]:
    """The method's network and the median time of ``steps`` training steps after ``warmup`` ones, on
    random crops and labels (the step's cost does not depend on their values)."""
    from monai.losses import DiceCELoss

    from methods import count_parameters, create_model

    torch.manual_seed(0)
    model = create_model(name, size=size, roi_size=(roi,) * 3).to(device)
    profile = PROFILES[size]  # the profile whose networks these are
    optimizer = torch.optim.AdamW(optimizer_groups(model, profile.weight_decay), lr=profile.lr)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.rand(crops, 1, roi, roi, roi, device=device)
    y = torch.randint(0, 14, (crops, 1, roi, roi, roi), device=device).float()
    scaler = grad_scaler_for(device)
    times = []
    model.train()
    for _ in range(warmup + steps):
        _sync(device)
        started = time.perf_counter()
        training_step(model, x, y, loss_fn, optimizer, scaler, device)
        _sync(device)
        times.append(time.perf_counter() - started)
    step = statistics.median(times[warmup:])
    total, trainable = count_parameters(model)
    return model, {
        "name": name,
        "params_trainable": trainable,
        "params_total": total,
        "train_step_s": round(step, 4),
        "crops_per_step": crops,
        "train_crops_per_s": round(crops / step, 2),
    }


def measure(name: str, size: str, roi: int, crops: int, device: str, steps: int = 5, warmup: int = 2) -> dict:
    """Training-step time, sliding-window time and the peak memory of both for one method."""
    with peak_memory(device) as memory:
        model, row = measure_training_step(name, size, roi, crops, device, steps, warmup)
        profile = PROFILES[size]
        volume = np.random.default_rng(0).random((1, 2 * roi, 2 * roi, roi), dtype=np.float32)
        _sync(device)
        started = time.perf_counter()
        predict_case(model, volume, roi, profile.sw_overlap, profile.sw_batch_size, device)  # what evaluation runs
        _sync(device)
        infer = time.perf_counter() - started
    return {
        **row,
        "sliding_window_s": round(infer, 3),
        "sliding_window_volume": [2 * roi, 2 * roi, roi],
        "peak_memory_mib": memory["peak_mib"],
        "peak_memory_kind": memory["kind"],
    }


def _scoring_cost(shape, spacing_mm, profile_spacing_mm, queue) -> None:
    from bench.data.labels import NUM_CLASSES
    from bench.data.regrid import to_original_grid
    from bench.evaluation.scores import score_case

    nx, ny, nz = shape
    # A body of 13 box-shaped organs filling the middle of the field of view, as in an abdominal CT.
    reference = np.zeros(shape, np.uint8)
    for organ in range(1, NUM_CLASSES):
        x0, y0 = nx // 4 + (organ * 23) % (nx // 3), ny // 4 + (organ * 37) % (ny // 3)
        reference[x0 : x0 + nx // 10, y0 : y0 + ny // 10, nz // 5 : nz // 5 + nz // 3] = organ
    affine = np.diag([*spacing_mm, 1.0])
    # The preprocessed grid: the body (3/4 of the field of view in-plane) at the profile's spacing.
    body = [int(n * s / profile_spacing_mm * f) for n, s, f in zip(shape, spacing_mm, (0.75, 0.75, 1.0), strict=True)]
    origin = [n * s * (1 - f) / 2 for n, s, f in zip(shape, spacing_mm, (0.75, 0.75, 1.0), strict=True)]
    pre_affine = np.diag([profile_spacing_mm] * 3 + [1.0])
    pre_affine[:3, 3] = origin
    index = [
        np.clip(((np.arange(b) * profile_spacing_mm + o) / s).astype(int), 0, n - 1)
        for b, o, s, n in zip(body, origin, spacing_mm, shape, strict=True)
    ]
    labels = reference[np.ix_(*index)]
    probabilities = torch.zeros((NUM_CLASSES, *body), dtype=torch.float32)
    probabilities.scatter_(0, torch.as_tensor(labels, dtype=torch.int64)[None], 1.0)
    del labels
    before = resident_mib()
    started = time.perf_counter()
    prediction = to_original_grid(probabilities, pre_affine, shape, affine)
    restored = time.perf_counter() - started
    started = time.perf_counter()
    scores = score_case(prediction, reference, spacing_mm)
    scored = time.perf_counter() - started
    queue.put(
        {
            "case_shape": list(shape),
            "case_spacing_mm": list(spacing_mm),
            "preprocessed_shape": body,
            "probabilities_mib": round(probabilities.numel() * 4 / 2**20, 1),
            "rss_before_mib": round(before, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "to_original_grid_s": round(restored, 2),
            "score_s": round(scored, 2),
            "liver_dice": round(scores["liver"]["dice"], 4),
        }
    )


def original_space_scoring_cost(shape=(512, 512, 150), spacing_mm=(0.78, 0.78, 2.5), profile_spacing_mm: float = 1.0) -> dict:
    """Time and peak memory of scoring one full-size case in the original label space: class
    probabilities on the preprocessed grid (the body at the profile's spacing) carried back to the
    label file's grid (``to_original_grid``), then Dice, NSD and HD95 for 13 organs. Measured in a
    fresh process, so its peak resident memory is this step's alone (plus the interpreter)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_scoring_cost, args=(tuple(shape), tuple(spacing_mm), profile_spacing_mm, queue))
    process.start()
    result = queue.get(timeout=1800)
    process.join()
    return result


# A test case's body after the crop, in mm (the built-in abdomen's at full size), for the time of
# one sliding-window pass over a whole case; bench speed measures a smaller volume and scales.
ASSUMED_CASE_MM = (330.0, 260.0, 220.0)


def paper_grid_hours(row: dict, profile, protocol, scoring_s_per_case: float = 0.0) -> dict:
    """Projected device-hours of one method over the whole grid the protocol defines (every draw of
    every fraction) under ``profile``: its training steps (``epochs`` x steps per epoch, as the
    trainer counts them) at the measured step time, plus the sliding-window passes over the test
    cases at every validation epoch and at the final evaluation, scaled from the measured window
    volume to ``ASSUMED_CASE_MM``, plus ``scoring_s_per_case`` for each finally scored case."""
    draws = [draw for fraction in protocol.draws.values() for draw in fraction]
    steps = sum(profile.epochs * max(len(d.train), profile.min_iterations_per_epoch) for d in draws)
    validations = profile.epochs // profile.val_every
    tested = sum(len(d.test) for d in draws)
    passes = (validations + 1) * tested
    case_voxels = math.prod(mm / profile.preprocess.spacing_mm for mm in ASSUMED_CASE_MM)
    pass_s = row["sliding_window_s"] * case_voxels / math.prod(row["sliding_window_volume"])
    seconds = steps * row["train_step_s"] + passes * pass_s + tested * scoring_s_per_case
    return {"runs": len(draws), "train_steps": steps, "window_passes": passes, "hours": round(seconds / 3600, 2)}
