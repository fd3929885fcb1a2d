"""The harness's own pipeline: build the method's network (seeded), train it with the shared
training loop (resuming from its checkpoint), and predict each test case by sliding windows, on
its label file's grid or on the preprocessed grid as the run's evaluation space says."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console

from bench.console import plain, progress_bar
from bench.evaluation.evaluate import EVAL_SPACES, CasePrediction, predict_cases, reference_of, validation_dice
from bench.plan.runs import PlannedRun, RunJob
from bench.runs.files import CHECKPOINT_FILE


@dataclass
class HarnessRun:
    run: PlannedRun
    job: RunJob
    console: Console
    network: object
    facts: dict | None = None
    spacing_mm: float | None = None
    state: object = None  # the trained state (bench.pipelines.checkpoint.TrainState) once trained

    def train(self) -> None:
        from bench.pipelines.training import steps_per_epoch, train

        grid, run = self.job.grid, self.run
        profile = grid.profile
        train_cases = [grid.cases[c] for c in run.train_ids]
        per_epoch = steps_per_epoch(len(train_cases), profile)
        with progress_bar(self.console) as progress:
            task = progress.add_task(plain(run.name), total=profile.epochs * per_epoch, status="")

            def on_step(epoch: int, step: int, loss: float, lr: float) -> None:
                progress.update(task, completed=epoch * per_epoch + step, status=f"epoch {epoch + 1}/{profile.epochs} loss {loss:.3f}")

            # Validation Dice on the test cases draws the convergence curves only; the scored model is the last epoch's.
            validation = validation_dice(
                [grid.cases[c] for c in run.test_ids],
                profile.roi,
                profile.sw_overlap,
                profile.sw_batch_size,
                grid.device,
                run.config.label_set,
            )
            self.state = train(
                self.network,
                train_cases,
                validation,
                profile,
                grid.device,
                run.run_dir,
                run.hash,
                run.config.seed,
                on_step=on_step,
                notify=lambda msg: self.console.print(f"[yellow]{plain(msg)}[/yellow]"),
            )
            progress.update(task, completed=profile.epochs * per_epoch)

    def predictions(self) -> Iterator[CasePrediction]:
        grid, profile = self.job.grid, self.job.grid.profile
        yield from predict_cases(
            self.state.model,
            [grid.cases[c] for c in self.run.test_ids],
            profile.roi,
            profile.sw_overlap,
            profile.sw_batch_size,
            grid.device,
            space=self.run.config.eval_space,
            references=lambda case_id: reference_of(grid.dataset, case_id),
        )

    def finish(self) -> None:
        self.state.save(self.run.run_dir / CHECKPOINT_FILE, self.run.hash, finished=True)


class HarnessPipeline:
    """Training and sliding-window inference under the uniform protocol: every method without a
    pipeline of its own."""

    eval_spaces = EVAL_SPACES

    def open(self, run: PlannedRun, job: RunJob, console: Console) -> HarnessRun:
        grid = job.grid
        backbone = grid.weights.tensors() if grid.weights is not None and run.backbone else None
        network = build_network(run.base_method, run.config, grid.profile, run.options, backbone)
        return HarnessRun(run, job, console, network, spacing_mm=grid.profile.preprocess.spacing_mm)


HARNESS = HarnessPipeline()


def build_network(method: str, config, profile, options: dict, backbone_state=None):
    """A run's network as its configuration builds it: the profile's size and crop, the run's label
    set, ``options`` and, for a SAM method, ``backbone_state``. Seeded initialisation: the same
    command builds the same network, a resumed run rebuilds the frozen random backbone its
    checkpoint leaves out, and ``bench predict`` the one the run was trained with. The options were
    checked when planning, so an error here is the builder's own (recorded as the run's failure)."""
    import torch

    from methods import create_model

    torch.manual_seed(config.seed)
    extra = {"backbone_state": backbone_state} if backbone_state is not None else {}
    classes = config.label_set.num_classes
    return create_model(method, size=profile.model_size, out_channels=classes, roi_size=(profile.roi,) * 3, **options, **extra)
