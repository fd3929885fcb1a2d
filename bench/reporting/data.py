"""What a report shows, read once from a runs folder through the run-file records: finished
results, the grid's state, each run's configuration and provenance, validation curves, and the
``bench flops`` / ``bench speed`` JSON saved beside the runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.data.labels import LabelSet
from bench.errors import UserError
from bench.io import read_json
from bench.runs.costs import RunCost
from bench.runs.files import CONFIG_FILE, LOG_FILE, SUMMARY_FILE, ConfigFile, RunFileError, RunSummary, read_log
from bench.runs.protocol import folder_protocol
from bench.runs.results import collect_rows, finished_summaries, result_columns, results_labels
from bench.runs.state import RunState, scan_grid
from splits import Protocol


@dataclass
class ReportData:
    """Everything a report shows, read once from the runs folder."""

    runs_dir: Path
    results: pd.DataFrame
    states: list[RunState]
    configs: dict[tuple[str, str, int], ConfigFile]
    curves: dict[str, dict[str, list[tuple[list[int], list[float]]]]]
    stamps: list[str]
    protocol: Protocol  # the folder's (bench.runs.protocol): which cases each draw trained and was tested on
    labels: LabelSet  # the runs' label set: their organs, the tables' columns
    extras: dict = field(default_factory=dict)  # flops / speed JSON found in the folder
    costs: dict[tuple[str, str, int], RunCost | None] = field(default_factory=dict)  # per finished run; None: not recorded

    @property
    def scoring(self) -> list[str]:
        """Where the scores were computed, one line per distinct way (for every table's caption)."""
        from bench.runs.results import describe_space

        spaces = []
        for c in self.configs.values():
            text = describe_space(c.config.eval_space, c.config.profile.get("preprocess", {}).get("spacing_mm"))
            text += f"; NSD at {c.config.nsd_tolerance_mm:g} mm"
            if text not in spaces:
                spaces.append(text)
        return spaces

    @property
    def synthetic(self) -> bool:
        return any(config.provenance.synthetic for config in self.configs.values()) or any("SYNTHETIC" in s for s in self.stamps)


def method_order(methods, paper: dict) -> list[str]:
    """The paper's row order for its methods, then anything else; an ablation variant follows its base."""
    paper_order = list(dict.fromkeys(m for _, m in paper))

    def key(label: str):
        base = label.split("[")[0]
        return (paper_order.index(base) if base in paper_order else len(paper_order), base, label)

    return sorted(set(methods), key=key)


def find_extras(runs_dir: Path) -> dict:
    """JSON from `bench flops --json` and `bench speed --json` saved in the runs folder, recognised by content."""
    extras: dict = {}
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            payload = read_json(path)
        except (ValueError, OSError):
            continue
        if isinstance(payload, dict) and payload.get("unit") == "GMACs" and "methods" in payload:
            extras["flops"], extras["flops_file"] = payload, path.name
        elif isinstance(payload, dict) and "loader_crops_per_s" in payload and "methods" in payload:
            extras["speed"], extras["speed_file"] = payload, path.name
    return extras


def compute_table(data: ReportData, methods: list[str]) -> list[dict]:
    """Per method: parameters as trained in these runs, and GMACs / time / memory where their JSON is present."""
    trained: dict[str, ConfigFile] = {}
    for (_, method, _), config in data.configs.items():
        trained.setdefault(method, config)
    flops = {r["name"]: r for r in data.extras.get("flops", {}).get("methods", [])}
    speed = {r["name"]: r for r in data.extras.get("speed", {}).get("methods", [])}
    rows = []
    for method in methods:
        base = method.split("[")[0]
        config = trained.get(method)
        f, s = flops.get(base, {}), speed.get(base, {})
        rows.append(
            {
                "method": method,
                "params_run": config.params_total if config else None,
                "trainable_run": config.params_trainable if config else None,
                "params_paper_size": f.get("params_total"),
                "trainable_paper_size": f.get("params_trainable"),
                "gmacs": f.get("gmacs"),
                # a method counted at the patch its own pipeline plans, not at the common cube
                "counted_input": f.get("input") if f.get("input_what") else None,
                "published_gmacs": f.get("published_gmacs"),
                "train_step_s": s.get("train_step_s"),
                "sliding_window_s": s.get("sliding_window_s"),
                "peak_memory_mib": s.get("peak_memory_mib"),
                "paper_grid_hours": s.get("paper_grid", {}).get("hours"),
            }
        )
    return rows


def provenance(data: ReportData) -> list[tuple[str, str]]:
    """What the numbers were made with; a field that differs between runs lists every value it takes."""

    def values(getter) -> str:
        seen = []
        for config in data.configs.values():
            text = str(getter(config))
            if text not in seen:
                seen.append(text)
        return "; ".join(seen) if seen else "no config.json found"

    def dataset(c: ConfigFile) -> str:
        return "SYNTHETIC abdomen (not BTCV)" if c.provenance.synthetic else f"BTCV ({c.config.data_identity})"

    return [
        ("data", values(dataset)),
        ("data folder", values(lambda c: c.provenance.data_root)),
        ("profile", values(lambda c: c.provenance.profile)),
        ("scoring", "; ".join(data.scoring) or "n/a"),
        ("SAM backbone weights", values(lambda c: c.provenance.sam_weights or "none (no SAM method)")),
        ("weights per method", values(lambda c: f"{c.config.method}: {c.config.weights}")),
        ("code revision", values(lambda c: c.provenance.code_revision)),
        ("device", values(lambda c: c.provenance.device)),
        ("hardware", values(lambda c: ", ".join(f"{k}: {v}" for k, v in c.provenance.hardware.items()))),
        ("package versions", values(lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.provenance.versions.items()) if v))),
        ("stamp", "; ".join(data.stamps) or "n/a"),
    ]


def _read_curve(log_path: Path) -> tuple[list[int], list[float]]:
    validated = [line for line in read_log(log_path) if line.val_dice is not None]
    return [line.epoch for line in validated], [line.val_dice for line in validated]


def load_report_data(runs_dir: Path) -> ReportData:
    """Raises UserError for a folder without runs or with a run file that is not what bench writes."""
    runs_dir = Path(runs_dir)
    states = scan_grid(runs_dir, ask_scheduler=False)  # a report is made from the run files alone
    if not states:
        raise UserError(f"no runs under {runs_dir} (expected <data>/<method>/repeat<k>/ folders written by bench run)")
    configs, curves, stamps = {}, {}, set()
    try:
        for s in states:
            if s.state == "missing":
                continue
            if (s.run_dir / CONFIG_FILE).exists():
                config = ConfigFile.read(s.run_dir / CONFIG_FILE)
                configs[(s.data, s.method, s.repeat)] = config
                stamps.add(config.provenance.stamp)
            elif s.state == "done":  # config.json lost: the summary carries the stamp too
                stamps.add(RunSummary.read(s.run_dir / SUMMARY_FILE).stamp)
            epochs, dice = _read_curve(s.run_dir / LOG_FILE)
            if epochs:
                curves.setdefault(s.data, {}).setdefault(s.method, []).append((epochs, dice))
        summaries = finished_summaries(runs_dir)
        results = pd.DataFrame(collect_rows(runs_dir, summaries), columns=result_columns())
        costs = {(s.data, s.method, s.repeat): RunCost.read(s.cost) for _, s in summaries}
    except RunFileError as exc:
        raise UserError(str(exc)) from None
    protocol = folder_protocol(runs_dir)
    others = sorted(
        {
            f"{c.config.protocol} ({data} {method} repeat {r})"
            for (data, method, r), c in configs.items()
            if c.config.protocol != protocol.name
        }
    )
    if others:
        raise UserError(
            f"{runs_dir} is a folder of protocol {protocol.name} but holds runs of another: {', '.join(others[:3])}; report them apart"
        )
    label_sets = {c.config.label_set for c in configs.values()} or {results_labels(results)}
    if len(label_sets) > 1:
        named = "; ".join(", ".join(ls.columns) for ls in label_sets)
        raise UserError(
            f"{runs_dir} holds runs of {len(label_sets)} label sets ({named}); a table has one set of organ columns: report them apart"
        )
    tabled = LabelSet(protocol.organs) if protocol.organs else label_sets.pop()  # the organs the protocol scores, in its order
    return ReportData(runs_dir, results, states, configs, curves, sorted(stamps), protocol, tabled, find_extras(runs_dir), costs)
