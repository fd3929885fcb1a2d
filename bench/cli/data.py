"""``bench data check`` and ``bench data synth``: validate a dataset folder, or write the built-in
synthetic abdomen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import ProtocolOption, console, err_console, user_errors
from bench.console import plain
from bench.errors import UserError
from splits import DEFAULT_PROTOCOL


@user_errors
def data_check(
    data_root: Annotated[Path | None, typer.Option(help="BTCV folder; default $BENCH_DATA_ROOT, else the synthetic abdomen.")] = None,
    protocol: ProtocolOption = DEFAULT_PROTOCOL,
) -> None:
    """Validate every case: files present and readable, shapes and affines agree, label values named by
    the dataset's labels, ids match the protocol's."""
    from bench.data.btcv import check_dataset
    from bench.data.source import resolve_dataset
    from splits import load_protocol

    ids = load_protocol(protocol).all_ids()
    dataset = resolve_dataset(data_root, ids, err_console)
    problems = check_dataset(dataset, ids)
    for line in problems:
        console.print(plain(line), highlight=False, soft_wrap=True)
    if problems:
        err_console.print(f"[red]{len(problems)} problem(s)[/red] in {plain(dataset.root)} ({dataset.layout} layout)")
        raise typer.Exit(code=2)
    console.print(f"{len(ids)} cases OK in {plain(dataset.root)} ({dataset.layout} layout{', synthetic' if dataset.synthetic else ''})")


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
