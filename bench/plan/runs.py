"""From a ``bench run`` request to the planned runs: labels, seeds, configurations and their hashes.

Everything a run decides is checked here, before the first case is touched, so a typo costs
nothing: method names, ``--set`` options (keys, types, and the builder's own checks at the run's
crop, on PyTorch's meta device), draws, and run folders that hold another configuration.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

from bench.data.labels import LabelSet
from bench.errors import UserError
from bench.plan.profiles import Profile
from bench.runs.files import CONFIG_FILE, Provenance, RunConfig, config_hash_in
from splits import DEFAULT_PROTOCOL, Protocol


@dataclass
class RunRequest:
    methods: list[str]
    data: str = "25pct"
    repeats: str | None = None  # None: the profile's (Profile.repeats), filled in by prepare_grid
    data_root: Path | None = None
    profile: str = "auto"
    device: str = "auto"
    out: Path = Path("runs")
    epochs: int | None = None
    roi: int | None = None
    checkpoint_minutes: float | None = None  # checkpoint at least this often (besides every validation epoch)
    sam_checkpoint: Path | None = None
    allow_random_backbone: bool = False
    options: dict = field(default_factory=dict)  # hyperparameter overrides (ablations), e.g. {"r": 48}
    profile_overrides: dict = field(default_factory=dict)  # --profile-set and --seed: any profile setting
    eval_space: str = "original"  # bench.evaluation.evaluate.EVAL_SPACES
    nsd_tolerance_mm: float = 1.0
    save_predictions: bool = False  # label maps as NIfTI in RUN/predictions/ (not hashed: they do not change a score)
    executor: str = "local"  # local: runs one after another here; slurm: one SLURM job per run (bench.executors.slurm)
    slurm: object = None  # bench.executors.slurm.SlurmOptions for --executor slurm
    protocol: str = DEFAULT_PROTOCOL  # a built-in protocol's name or a protocol file (splits.load_protocol)
    threads: int | None = None  # PyTorch threads; None: the cores given to this process, shared among torchrun ranks or jobs
    jobs: int | str = 1  # runs at once on this machine (bench.executors.jobs); "auto": one per GPU, 1 on a CPU
    track: tuple[str, ...] = ()  # --track: tensorboard, mlflow or mlflow=URI (bench.runs.tracking); () the profile's


@dataclass
class PlannedRun:
    method: str  # the label in paths and tables: name, or name[key=value,...] for a variant
    data: str
    repeat: int
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    run_dir: Path
    config: RunConfig | None = None
    hash: str = ""
    base_method: str = ""
    options: dict = field(default_factory=dict)
    title: str = ""  # the method's title (methods.registry.MethodInfo), for report rows
    backbone: bool = False  # the method takes the grid's SAM backbone weights
    pipeline: object = None  # what its runs go through: the method's own pipeline, else the harness's (bench.pipelines.context.Pipeline)
    source: str = ""  # where a plugin method comes from ("plugin sam3d-x 0.1.0"), for report rows; "" when built in
    compute_reference: bool = False  # MethodInfo.compute_reference, for the report's compute-matched pairs
    scored: tuple[str, ...] = ()  # the organs its summary keeps, in table order (the protocol's); empty: all

    @property
    def name(self) -> str:
        """How every progress line shows the run: ``unetr 12pct #0``."""
        return f"{self.method} {self.data} #{self.repeat}"

    def failure_line(self, reason: str) -> str:
        """How a failed run is listed at the end of a grid: ``unetr 12pct repeat 0: <reason>``."""
        return f"{self.method} {self.data} repeat {self.repeat}: {reason}"


def method_label(name: str, options: dict) -> str:
    """``tpmamba`` or, for an ablation variant, ``tpmamba[planes=dw,r=48]`` (sorted keys)."""
    return name if not options else f"{name}[{','.join(f'{k}={v}' for k, v in sorted(options.items()))}]"


def parse_options(pairs: list[str], where: str = "--set") -> dict:
    """``["r=48", "planes=dw", "multiscale=false"]`` -> values read as true/false, numbers or text;
    each method then checks them against its own options (``methods.options.typed_overrides``)."""
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise UserError(f"{where} expects KEY=VALUE, got {pair!r}")
        lowered = text.strip().lower()
        value: object
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text.strip()
        options[key.strip()] = value
    return options


def split_method_list(text: str) -> list[str]:
    """``"tpmamba[r=48,planes=dw],masam"`` -> ``["tpmamba[r=48,planes=dw]", "masam"]``: commas inside
    brackets belong to the entry."""
    entries, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    entries.append(current)
    return [e.strip() for e in entries if e.strip()]


def parse_method_entry(entry: str) -> tuple[str, dict]:
    """``tpmamba[r=48,planes=dw]`` -> ``("tpmamba", {"r": 48, "planes": "dw"})``; a comma list value
    (``nnunet[features=16,32,64]``) keeps its commas. The options are checked against the method when
    planned."""
    name, bracket, rest = entry.partition("[")
    if not bracket:
        return entry.strip(), {}
    if not rest.endswith("]") or not rest[:-1].strip():
        raise UserError(f"--methods entry {entry!r}: write options as NAME[KEY=VALUE,...]")
    pairs: list[str] = []
    for part in rest[:-1].split(","):
        if "=" in part or not pairs:
            pairs.append(part)
        else:  # a comma list value: features=16,32,64
            pairs[-1] += "," + part
    return name.strip(), parse_options(pairs, f"--methods entry {entry!r}")


def run_seed(profile: Profile, method: str, data: str, repeat: int) -> int:
    return profile.seed * 1_000_003 + zlib.crc32(f"{method}|{data}|{repeat}".encode()) % 1_000_003


def checked_options(name: str, options: dict, profile: Profile) -> dict:
    """The ``--set`` options of one method, typed and accepted by its builder at this run's crop.

    The network is built on the meta device (nothing allocated), so a 100 M-parameter model costs
    milliseconds. A ValueError is the user's (a key, type or value the method does not take); any
    other error from a builder is a bug in it and is not dressed up as bad input.
    """
    from methods import get_method
    from methods.options import typed_overrides
    from methods.registry import build_on_meta

    info = get_method(name)
    roi = (profile.roi,) * 3
    try:
        typed = typed_overrides(info.name, info.paper, options)
        build_on_meta(name, size=profile.model_size, roi_size=roi, **typed)  # create_model checks the crop first
    except ValueError as exc:
        raise UserError(f"{method_label(name, options)}: {exc}") from None
    return typed


def configure(run: PlannedRun, protocol: Protocol, label_set: LabelSet, **fields) -> PlannedRun:
    """The one place a run's configuration is built (``plan_runs``, ``bench score``): its identity
    from the planned run (label, fraction, draw, cases), its protocol and label set, ``fields`` for
    the rest; hashed, and refused where its folder holds another configuration."""
    run.config = RunConfig(
        method=run.method,
        data=run.data,
        repeat=run.repeat,
        train_cases=list(run.train_ids),
        test_cases=list(run.test_ids),
        protocol=protocol.name,
        labels=label_set.organs,
        **fields,
    )
    run.hash = run.config.hash()
    check_existing(run)
    return run


def check_existing(run: PlannedRun) -> None:
    """A run folder that holds another configuration is refused, never mixed with this one."""
    if (run.run_dir / CONFIG_FILE).exists():
        existing = config_hash_in(run.run_dir)
        if existing != run.hash:
            raise UserError(
                f"{run.run_dir} holds a run with a different configuration (hash {existing}, now {run.hash}); "
                "use another --out or remove that folder"
            )


@dataclass
class RunJob:
    """What every run of a grid shares, as the lifecycle and the pipelines need it."""

    provenance: Provenance
    profile_name: str
    runs_dir: Path  # where results.csv is rebuilt after each run
    save_predictions: bool = False
    track: tuple = ()  # the trackers the run is followed in (bench.runs.tracking.TrackSpec)
