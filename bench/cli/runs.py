"""``bench report``, ``bench score`` and ``bench status``: the commands that read a runs folder
or add scored predictions to it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.common import PluginOption, ProtocolOption, console, fractions_help, use_plugins, user_errors
from bench.console import plain
from bench.errors import UserError
from splits import DEFAULT_PROTOCOL


@user_errors
def report(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder written by bench run.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the report files; default RUNS_DIR/report.")] = None,
    plugin: PluginOption = None,
) -> None:
    """Table 1 in the paper's style (Markdown, LaTeX, CSV), the paper's figures and report.html, from run files only."""
    use_plugins(plugin)  # a metric plugin's tables and sections
    from bench.reporting.report import write_report
    from bench.runs.files import REPORT_DIR
    from reports import paper_table1

    if not runs_dir.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist")
    paths = write_report(runs_dir, out or runs_dir / REPORT_DIR, paper_table1())
    names = ", ".join(sorted(p.name for p in paths.values()))
    console.print(f"wrote {len(paths)} files to {plain(paths['report.html'].parent)}: {names}", soft_wrap=True)
    console.print(f"report: {plain(paths['report.html'])}")


@user_errors
def score(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of label maps, one NIfTI per test case named by its id (label0035.nii.gz).")],
    method: Annotated[str, typer.Option(help="Row label in the tables, e.g. tpmamba-official.")],
    data: Annotated[str, typer.Option(help=fractions_help("Fraction the predicting model was trained on"))],
    repeat: Annotated[int, typer.Option(help="Draw of that fraction the model was trained on (0-based).")],
    data_root: Annotated[Path | None, typer.Option(help="BTCV folder with the test labels; default as bench run.")] = None,
    out: Annotated[Path, typer.Option(help="Runs folder to write <data>/<method>/repeat<k>/ into.")] = Path("runs"),
    nsd_tolerance: Annotated[float, typer.Option("--nsd-tolerance", help="Normalized surface Dice tolerance, mm.")] = 1.0,
    protocol: ProtocolOption = DEFAULT_PROTOCOL,
    label_map: Annotated[
        str,
        typer.Option(
            help="same: the predictions use the dataset's label values; by-name: another label set's, organs matched by meaning "
            "(docs/your-data.md); or a JSON file mapping prediction names or values to dataset names, the rest matched by meaning."
        ),
    ] = "same",
    prediction_labels: Annotated[
        Path | None,
        typer.Option(help="With --label-map by-name or FILE: a dataset.json naming the predictions' labels (default: BTCV's 13)."),
    ] = None,
    plugin: PluginOption = None,
) -> None:
    """Score anyone's predictions with bench's metrics in the original label space; bench report shows them beside trained runs.
    With --label-map, a model trained on one dataset is scored on another's labels, on the organs both name."""
    use_plugins(plugin)  # a metric plugin scores too
    from bench.pipelines.external import score_predictions

    source, mapping = None, None
    if label_map != "same":
        from bench.data.btcv import labels_from_dataset_json
        from bench.data.labels import BTCV_LABELS

        if label_map != "by-name":
            mapping = read_label_mapping(Path(label_map))
        source = BTCV_LABELS
        if prediction_labels is not None:
            try:
                source = labels_from_dataset_json(json.loads(prediction_labels.read_text())["labels"], str(prediction_labels))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise UserError(f"{prediction_labels}: not a dataset.json with 'labels' ({exc})") from None
    elif prediction_labels is not None:
        raise UserError("--prediction-labels needs --label-map by-name or --label-map FILE")
    folder = score_predictions(pred_dir, method, data, repeat, out, console, data_root, nsd_tolerance, protocol, source, mapping)
    console.print(f"scored run: {plain(folder)}")


def read_label_mapping(path: Path) -> dict[str, str | None]:
    """A mapping file: JSON, prediction organ name or label value -> dataset organ name (or null: not scored)."""
    if not path.is_file():
        raise UserError(f"--label-map must be same, by-name or a JSON mapping file; {path} is none of them")
    try:
        mapping = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) or v is None for v in mapping.values()):
        raise UserError(
            f"{path}: a mapping file is one JSON object, prediction name or value -> dataset name or null, "
            'e.g. {"postcava": "inferior vena cava"}'
        )
    return {str(k): v for k, v in mapping.items()}


@user_errors
def status(
    runs_dir: Annotated[Path, typer.Argument(help="A runs folder written by bench run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only: one object per run of the grid.")] = False,
) -> None:
    """The grid of a runs folder: done, running, failed (with the reason), incomplete (a rerun resumes it) and missing."""
    from bench.runs.state import STATES, grid_counts, scan_grid

    if not runs_dir.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist")
    states = scan_grid(runs_dir)
    if as_json:
        rows = [{**s.__dict__, "run_dir": str(s.run_dir)} for s in states]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not states:
        raise UserError(f"no runs under {runs_dir} (expected <data>/<method>/repeat<k>/ folders written by bench run)")
    table = Table(title=f"Runs in {plain(runs_dir)}", caption="expected: every method here x every fraction here x the splits' draws")
    for column in ("data", "method", *STATES, "of"):
        table.add_column(column, justify="left" if column in ("data", "method") else "right")
    styles = {"done": "green", "running": "cyan", "failed": "red", "incomplete": "yellow", "missing": "dim"}
    for (data, method), entry in grid_counts(states).items():
        cells = [f"[{styles[k]}]{entry[k]}[/{styles[k]}]" if entry[k] else "0" for k in STATES]
        table.add_row(plain(data), plain(method), *cells, str(entry["expected"]))
    console.print(table)
    for s in states:
        if s.state in ("failed", "running", "incomplete"):
            detail = s.reason or ("rerun the command to resume" if s.state == "incomplete" else "")
            console.print(f"{s.state:<10} {plain(s.run_dir)} ({s.epochs_done} epochs): {plain(detail)}", highlight=False, soft_wrap=True)
        if s.recovered:
            console.print(f"{'recovered':<10} {plain(s.run_dir)} ({s.state}): {plain(s.recovered)}", highlight=False, soft_wrap=True)
    total = {k: sum(s.state == k for s in states) for k in STATES}
    console.print(", ".join(f"{n} {k}" for k, n in total.items()) + f" of {len(states)} runs")


@user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run: runs/<data>/<method>/repeat<k>.")],
    images: Annotated[
        Path, typer.Option(help="Folder of CT images to segment: NIfTI files and folders of one DICOM series each (or one series folder).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the label maps, one per image under its name, on its grid.")],
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    sam_checkpoint: Annotated[
        Path | None, typer.Option(help="The SAM weights the run was trained on (SAM methods, paper profile).")
    ] = None,
) -> None:
    """Segment any folder of images with a finished run's network, its preprocessing and sliding window,
    each label map written on its image's own grid. Unreadable images are one line each; the rest go on."""
    from bench.device import resolve_device
    from bench.pipelines.predict import load_predictor, predict_folder

    if not images.is_dir():
        raise UserError(f"--images {images} is not a folder")
    predictor = load_predictor(run_dir, resolve_device(device), sam_checkpoint)
    written, failures = predict_folder(predictor, images, out, console)
    console.print(f"wrote {len(written)} label maps to {plain(out)}", highlight=False)
    if failures:
        raise UserError(
            f"{len(failures)} of {len(written) + len(failures)} images could not be read (listed above); the others were written"
        )
