"""The records a decided grid is carried in: the decision every job of a grid is handed
(``Decided``), the prepared grid its runs execute in (``PreparedGrid``); what every run of it
shares in the lifecycle is ``bench.plan.runs.RunJob``."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.data.btcv import Dataset
from bench.data.settings import PreprocessedCase
from bench.plan.profiles import Profile
from bench.plan.runs import PlannedRun, RunRequest
from bench.plan.weights import BackboneWeights
from bench.runs.files import Provenance
from splits import Draw, Protocol


@dataclass
class Decided:
    """What a request decides once, before any run is planned, and what every job of the grid is
    handed (``bench.executors``): the checked request, its protocol, device, profile (with the
    command's changes), backbone weights and dataset. What depends on the machine a process runs on
    (its threads, the loader's workers) is set there by ``bench.plan.grid.localize``."""

    request: RunRequest
    protocol: Protocol
    device: str
    profile: Profile  # the loader's workers capped at ``threads`` in this process
    overrides: dict  # what the command changed in the profile, flags included
    weights: BackboneWeights | None
    dataset: Dataset
    draws: dict[int, Draw]  # the draws of the fraction to run, by number (--repeats, else the profile's)
    workers: int  # the loader's workers the profile asks for, before any process caps them
    threads: int = 0  # PyTorch's threads in this process; 0 until localized
    tracking: tuple = ()  # the trackers every run is followed in (bench.runs.tracking.TrackSpec)

    def handed_to_jobs(self, **request_changes) -> Decided:
        """The decision a job runs its one planned run under: the request as a job runs it
        (``request_changes``: one process, local, an absolute runs folder; a --jobs job's thread
        share) and the backbone weights as a file name, which the job reads (``BackboneWeights.portable``)."""
        weights = self.weights.portable() if self.weights is not None else None
        return replace(self, request=replace(self.request, **request_changes), weights=weights, threads=0)


@dataclass
class PreparedGrid:
    """Everything the runs of one request share, decided and checked before the first run starts:
    the decision (``Decided``), the planned runs, their preprocessed cases and the provenance."""

    decided: Decided
    runs: list[PlannedRun]
    cases: dict[str, PreprocessedCase]
    provenance: Provenance

    @property
    def request(self) -> RunRequest:
        return self.decided.request

    @property
    def protocol(self) -> Protocol:
        return self.decided.protocol

    @property
    def profile(self) -> Profile:
        return self.decided.profile

    @property
    def device(self) -> str:
        return self.decided.device

    @property
    def dataset(self) -> Dataset:
        return self.decided.dataset

    @property
    def weights(self) -> BackboneWeights | None:
        return self.decided.weights

    @property
    def profile_overrides(self) -> dict:
        return self.decided.overrides

    @property
    def threads(self) -> int:
        return self.decided.threads
