"""``bench data check`` and ``bench data synth``: validate a dataset folder, or write the built-in
synthetic abdomen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import console, err_console, user_errors
from bench.console import plain
from bench.errors import UserError


@user_errors
def data_check(
    data_root: Annotated[Path | None, typer.Option(help="Dataset folder; default $BENCH_DATA_ROOT, else the synthetic abdomen.")] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="Also check the folder against a protocol's cases (a built-in name or a file); without it the data alone is checked."
        ),
    ] = None,
) -> None:
    """Validate every case: files present and readable (NIfTI or DICOM series), image and label on one
    grid, label values named by the dataset's labels; with --protocol, its case ids too."""
    from bench.data.btcv import check_dataset
    from bench.data.labels import BTCV_LABELLED_IDS
    from bench.data.source import resolve_dataset
    from splits import load_protocol

    ids = load_protocol(protocol).all_ids() if protocol else None
    dataset = resolve_dataset(data_root, ids or BTCV_LABELLED_IDS, err_console)
    found = check_dataset(dataset, ids)
    for line in found.notes:
        console.print(f"note: {plain(line)}", highlight=False, soft_wrap=True)
    for line in found.problems:
        console.print(plain(line), highlight=False, soft_wrap=True)
    if found.problems:
        err_console.print(f"[red]{len(found.problems)} problem(s)[/red] in {plain(dataset.root)} ({dataset.layout} layout)")
        raise typer.Exit(code=2)
    labels = dataset.labels
    named = "BTCV's 13 organs" if labels.is_btcv else f"{len(labels.organs)} organs from its dataset.json"
    checked = len(ids) if ids else len(dataset.cases)
    kind = f"{dataset.layout} layout{', synthetic' if dataset.synthetic else ''}"
    console.print(f"{checked} cases OK in {plain(dataset.root)} ({kind}; {named})", highlight=False, soft_wrap=True)
    if not ids:
        for line in protocol_advice(dataset):
            console.print(line, highlight=False, soft_wrap=True)


def protocol_advice(dataset) -> list[str]:
    """Which built-in protocols the dataset's cases fit, and the command that makes one for it."""
    import re

    from splits import built_in_protocols, load_protocol

    labelled = sorted(cid for cid, case in dataset.cases.items() if case.label is not None)
    fitting = [name for name in built_in_protocols() if set(load_protocol(name).all_ids()) <= set(labelled)]
    lines = []
    if fitting:
        lines.append(f"built-in protocols these cases fit: {', '.join(fitting)} (bench run --protocol NAME)")
    name = re.sub(r"[^a-z0-9]+", "-", Path(dataset.root).resolve().name.lower()).strip("-") or "mine"
    if len(labelled) >= 10:
        split = "--folds 5"
    else:
        split = "--test " + ",".join(labelled[-max(1, len(labelled) // 5) :]) + " --fractions 100pct"
    root = f"--data-root {plain(dataset.root)} " if not dataset.synthetic else ""
    lines.append(f"a protocol for these {len(labelled)} cases: bench splits make {root}--name {name} {split} --out {name}.json")
    return lines


@user_errors
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write RawData/Training/{img,label}/ into.")],
    spacing_scale: Annotated[float, typer.Option(help="Multiply voxel sizes (1.0 = BTCV-like; larger = smaller files, for tests).")] = 1.0,
    dataset: Annotated[
        str, typer.Option(help="btcv (BTCV's ids, layout and 13 labels) or amos (AMOS-like: Decathlon layout, dataset.json, 15 labels).")
    ] = "btcv",
) -> None:
    """Write a synthetic abdomen (30 cases, fixed seed: identical every time), stamped synthetic."""
    from bench.data.source import ensure_synthetic
    from bench.data.synthetic import SYNTHETIC_KINDS

    if not 0.25 <= spacing_scale <= 16:
        raise UserError(f"--spacing-scale must be between 0.25 and 16, got {spacing_scale}")
    if dataset not in SYNTHETIC_KINDS:
        raise UserError(f"--dataset must be one of {', '.join(SYNTHETIC_KINDS)}, got {dataset!r}")
    ids = SYNTHETIC_KINDS[dataset].ids
    ensure_synthetic(out, ids, console, spacing_scale, dataset)
    console.print(f"wrote {len(ids)} synthetic {dataset} cases to {plain(out)} (not {dataset.upper()}: stamped synthetic)")
