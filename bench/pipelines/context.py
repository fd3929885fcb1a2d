"""The contract between the harness and a pipeline (``sam3d_bench`` exports it): a ``Pipeline``
opens one run from a ``RunContext`` and hands back a ``PipelineRun`` that trains, then yields one
``CasePrediction`` per test case. The lifecycle (``bench.pipelines.lifecycle``) does the rest.

The harness's own pipeline is ``bench.pipelines.harness.HarnessPipeline``; a method that plans,
trains and predicts by itself (nnU-Net v2, ``bench.pipelines.nnunetv2``) registers an object of its
own with ``register_method(..., pipeline=...)``; one that trains with the harness but predicts its
own way registers a ``HarnessPipeline`` subclass (docs/add-a-method.md shows both).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rich.console import Console

from bench.data.btcv import Case, read_label
from bench.data.labels import LabelSet
from bench.data.settings import PreprocessedCase
from bench.evaluation.predictions import CasePrediction, Reference
from bench.plan.profiles import Profile
from bench.plan.weights import BackboneWeights
from bench.runs.files import RunConfig


@dataclass(frozen=True)
class RunContext:
    """Everything a pipeline is given to open one run, decided and checked before any run started."""

    name: str  # how every line shows the run: "unetr 12pct #0"
    method: str  # the registered method's name
    options: Mapping[str, Any]  # its --set options, typed and checked (what create_model gets beyond the profile's size)
    config: RunConfig  # the run's configuration as config.json records it: hyperparameters, seed, eval_space, ...
    profile: Profile  # the profile with the command's changes; its num_workers fit this process's threads
    profile_overrides: Mapping[str, Any]  # what the command changed in the profile (an --epochs shortens every method's training)
    device: str  # "cuda" or "cpu": the device this process trains on
    threads: int  # PyTorch's threads in this process (its share of the cores it was given)
    label_set: LabelSet  # the dataset's organs, in label-value order
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    originals: Mapping[str, Case]  # the run's cases as files (image, label), by case id
    preprocessed: Mapping[str, PreprocessedCase]  # the run's cases at the profile's preprocessing; empty unless the pipeline needs them
    weights: BackboneWeights | None  # the grid's backbone weights, for a method that takes them
    run_dir: Path  # the run's folder: the pipeline may keep files here (checkpoints, its own logs)
    cache_dir: Path  # where what several runs share is kept (prepared data)

    def reference(self, case_id: str) -> Reference:
        """A case's label file as the reference its original-space scores compare against."""
        return Reference(*read_label(self.originals[case_id], self.label_set))

    def backbone_state(self) -> dict | None:
        """The backbone weights' tensors for the method's builder (``backbone_state``); None when
        the method takes none or the backbone is random."""
        return self.weights.tensors() if self.weights is not None else None


@runtime_checkable
class PipelineRun(Protocol):
    """One opened run of a pipeline."""

    network: Any  # the module whose parameters config.json counts; None when there is none (external predictions)
    facts: dict | None  # what the pipeline decided for this run (nnU-Net: its plan), kept in the provenance
    spacing_mm: float | None  # the grid the pipeline worked on, for the summary; None: the label files' own
    # Optional, for the run's recorded cost (bench.runs.costs): ``step_seconds``, the seconds each
    # optimisation step of this session took (absent: steps not counted), and ``counted_input``, the
    # patch shape its GMACs are counted at (absent: the profile's crop).

    def train(self) -> None:
        """Train to the end, resuming from what an interrupted run left; every torchrun rank calls it."""

    def predictions(self) -> Iterator[CasePrediction]:
        """Each test case's label map and what it is scored against, one at a time (first rank only)."""

    def finish(self) -> None:
        """After the summary is scored, before it is written (the harness keeps only the final weights)."""


@runtime_checkable
class Pipeline(Protocol):
    """What turns a planned run into predictions (see the module docstring)."""

    eval_spaces: tuple[str, ...]  # the --eval-space values its predictions can be scored in, checked when planning

    def needs_preprocessed(self, profile: Profile) -> bool:
        """Whether its runs read the harness's preprocessed cases (``RunContext.preprocessed``)
        under ``profile``; the grid preprocesses them once, before the first run, when one does."""

    def open(self, context: RunContext, console: Console) -> PipelineRun:
        """Build or plan the run's network, resuming nothing yet; bad input raised here leaves no run folder."""
