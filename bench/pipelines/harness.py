"""The harness's own pipeline: build the method's network (seeded), train it with the shared
training loop (resuming from its checkpoint), and predict each test case by sliding windows, on
its label file's grid or on the preprocessed grid as the run's evaluation space says.

A method that trains this way but predicts its own way (a prompted SAM, test-time augmentation)
registers a subclass of ``HarnessPipeline`` that overrides ``probabilities`` (and ``build``, to
build its network otherwise); validation during training and the scored predictions both go
through it, and the harness carries its probabilities to the evaluation space."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from rich.console import Console
from torch import nn

from bench.console import log_line, plain, progress_bar
from bench.data.settings import PreprocessedCase
from bench.evaluation.evaluate import EVAL_SPACES, predict_cases, sliding_windows, validation_dice
from bench.evaluation.predictions import CasePrediction
from bench.pipelines.context import PipelineRun, RunContext
from bench.plan.profiles import Profile
from bench.runs.files import CHECKPOINT_FILE


@dataclass
class HarnessRun:
    pipeline: HarnessPipeline
    context: RunContext
    console: Console
    network: nn.Module
    facts: dict | None = None
    spacing_mm: float | None = None
    state: object = None  # the trained state (bench.pipelines.checkpoint.TrainState) once trained
    step_seconds: list[float] = field(default_factory=list)  # each optimisation step of this session (its cost)

    def train(self) -> None:
        from bench.pipelines.training import steps_per_epoch, train

        context, profile = self.context, self.context.profile
        train_cases = [context.preprocessed[c] for c in context.train_ids]
        per_epoch = steps_per_epoch(len(train_cases), profile)
        with progress_bar(self.console) as progress:
            task = progress.add_task(plain(context.name), total=profile.epochs * per_epoch, status="")

            def on_step(epoch: int, step: int, loss: float, lr: float, seconds: float) -> None:
                self.step_seconds.append(seconds)
                progress.update(task, completed=epoch * per_epoch + step, status=f"epoch {epoch + 1}/{profile.epochs} loss {loss:.3f}")

            # Validation Dice on the test cases draws the convergence curves only; the scored model is the last epoch's.
            held_out = [context.preprocessed[c] for c in context.test_ids]

            def validating(model: nn.Module):
                predict, count = self._probabilities(model), itertools.count(1)

                def each(case: PreprocessedCase) -> torch.Tensor:
                    progress.update(task, status=f"validating case {next(count)}/{len(held_out)}")
                    return predict(case)

                return each

            dice_of = validation_dice(held_out, validating, context.label_set)

            def validation(model: nn.Module) -> float:
                dice = dice_of(model)
                log_line(self.console, f"{context.name}: validation Dice {dice:.3f} on {len(held_out)} cases")
                return dice

            self.state = train(
                self.network,
                train_cases,
                validation,
                profile,
                context.device,
                context.run_dir,
                context.config.hash(),
                context.config.seed,
                on_step=on_step,
                notify=lambda msg: self.console.print(f"[yellow]{plain(msg)}[/yellow]"),
            )
            progress.update(task, completed=profile.epochs * per_epoch)

    def _probabilities(self, model: nn.Module):
        return lambda case: self.pipeline.probabilities(model, case, self.context)

    def predictions(self) -> Iterator[CasePrediction]:
        context, model = self.context, self.state.model
        was_training = model.training
        model.eval()
        try:
            yield from predict_cases(
                [context.preprocessed[c] for c in context.test_ids],
                self._probabilities(model),
                space=context.config.eval_space,
                references=context.reference,
            )
        finally:
            model.train(was_training)

    def finish(self) -> None:
        self.state.save(self.context.run_dir / CHECKPOINT_FILE, self.context.config.hash(), finished=True)


class HarnessPipeline:
    """Training and sliding-window inference under the uniform protocol: every method that
    registers no pipeline of its own. Subclass it to predict another way (the module docstring)."""

    eval_spaces: tuple[str, ...] = EVAL_SPACES

    def needs_preprocessed(self, profile: Profile) -> bool:
        """Always: it trains on the harness's preprocessed crops."""
        return True

    def build(self, context: RunContext) -> nn.Module:
        """The run's network, seeded (``build_network``)."""
        return build_network(context.method, context.config, context.profile, dict(context.options), context.backbone_state())

    def probabilities(self, model: nn.Module, case: PreprocessedCase, context: RunContext) -> torch.Tensor:
        """Class probabilities (C, X, Y, Z) on ``case``'s preprocessed grid, from the model in eval
        mode under ``torch.no_grad``: gaussian-weighted sliding windows of the profile's crop. The
        case's label is there for a method that prompts from it; the harness scores what comes back."""
        profile = context.profile
        return sliding_windows(model, profile.roi, profile.sw_overlap, profile.sw_batch_size, context.device)(case)

    def open(self, context: RunContext, console: Console) -> PipelineRun:
        network = self.build(context)
        return HarnessRun(self, context, console, network, spacing_mm=context.profile.preprocess.spacing_mm)


HARNESS = HarnessPipeline()


def build_network(method: str, config, profile, options: dict, backbone_state=None):
    """A run's network as its configuration builds it: the profile's size and crop, the run's label
    set, ``options`` and, for a SAM method, ``backbone_state``. Seeded initialisation: the same
    command builds the same network, a resumed run rebuilds the frozen random backbone its
    checkpoint leaves out, and ``bench predict`` the one the run was trained with. The options were
    checked when planning, so an error here is the builder's own (recorded as the run's failure)."""
    from methods import create_model

    torch.manual_seed(config.seed)
    extra = {"backbone_state": backbone_state} if backbone_state is not None else {}
    classes = config.label_set.num_classes
    return create_model(method, size=profile.model_size, out_channels=classes, roi_size=(profile.roi,) * 3, **options, **extra)
