"""The runs folder, defined once: where a run's files are, what they are called, and what a log
line holds. Every reader and writer (runner, trainer, grid and status, results, report, SLURM) goes
through these names.

```
RUNS_DIR/<data>/<method label>/repeat<k>/config.json     resolved configuration, its hash, provenance
                                         log.jsonl       one LogLine per epoch
                                         checkpoint.pt   latest training state (weights only once finished)
                                         summary.json    per case and organ: metrics; means
                                         failed.json     only after a failure: reason, traceback, epochs done
                                         running.json    while a process works on the run
                                         submitted.json  --executor slurm: the job that will run it
RUNS_DIR/results.csv                                     long table rebuilt from the summaries
RUNS_DIR/report/                                         bench report's output
```
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed.json"
RUNNING_FILE = "running.json"
SUBMITTED_FILE = "submitted.json"
RESULTS_CSV = "results.csv"
REPORT_DIR = "report"


def run_dir(runs_dir: Path, data: str, method_label: str, repeat: int) -> Path:
    return Path(runs_dir) / data / method_label / f"repeat{repeat}"


def is_finished(folder: Path) -> bool:
    """A run is finished once its summary is written (the last file a run writes)."""
    return (Path(folder) / SUMMARY_FILE).exists()


@dataclass(frozen=True)
class LogLine:
    """One epoch of log.jsonl; ``val_dice`` only on validation epochs."""

    epoch: int
    loss: float
    lr: float
    seconds: float
    val_dice: float | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


def read_log(log_path: Path) -> list[LogLine]:
    """log.jsonl's epochs; a line cut by a crash is skipped, the epochs before it still count."""
    if not Path(log_path).exists():
        return []
    lines = []
    for text in Path(log_path).read_text().splitlines():
        try:
            entry = json.loads(text)
            lines.append(LogLine(**entry))
        except (ValueError, TypeError):
            continue
    return lines


def epochs_logged(folder: Path) -> int:
    return max((line.epoch for line in read_log(Path(folder) / LOG_FILE)), default=0)
