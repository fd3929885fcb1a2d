"""``bench splits make``: a protocol file for any dataset, drawn as the built-in ones are. Registered
on the app by ``bench.cli.__main__``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import console, err_console, user_errors
from bench.console import plain
from bench.errors import UserError

DEFAULT_FRACTIONS = "100pct,25pct,12pct"


def fraction_sizes(text: str, pool: int) -> dict[str, int | None]:
    """``100pct,25pct,12pct`` over ``pool`` training cases -> {"100pct": None (all of them),
    "25pct": 6, "12pct": 3} (rounded, at least one case)."""
    sizes: dict[str, int | None] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d+)pct", part)
        if not match or not 0 < int(match.group(1)) <= 100:
            raise UserError(f"--fractions takes percentages like 100pct,25pct,12pct, got {part!r}")
        percent = int(match.group(1))
        sizes[part] = None if percent == 100 else max(1, round(pool * percent / 100))
    if "100pct" not in sizes:
        raise UserError("--fractions must include 100pct (every training case)")
    return {"100pct": None, **{k: v for k, v in sizes.items() if v is not None}}


@user_errors
def splits_make(
    name: Annotated[str, typer.Option(help="The protocol's name: in every run's configuration and under every table.")],
    out: Annotated[Path, typer.Option(help="The protocol file to write (JSON); an existing file is not overwritten.")],
    data_root: Annotated[Path | None, typer.Option(help="Dataset folder; default $BENCH_DATA_ROOT, else the synthetic abdomen.")] = None,
    test: Annotated[str | None, typer.Option(help="Comma-separated test case ids: one test set for every draw.")] = None,
    folds: Annotated[int | None, typer.Option(help="K folds over every case, nnU-Net's assignment (instead of --test).")] = None,
    fractions: Annotated[str, typer.Option(help="Fractions of the training cases; 100pct is all of them.")] = DEFAULT_FRACTIONS,
    draws: Annotated[int, typer.Option(help="Seeded draws of each smaller fraction (with --test; with --folds: one per fold).")] = 5,
    seed: Annotated[int | None, typer.Option(help="Seed of the draws (default: the built-in protocols').")] = None,
) -> None:
    """Write a protocol for the dataset's labelled cases: a fixed test set (--test) or K folds (--folds),
    with seeded draws of smaller training fractions; use it with bench run --protocol FILE."""
    from bench.data.labels import BTCV_LABELLED_IDS
    from bench.data.source import data_identity, resolve_dataset
    from splits import parse_protocol
    from splits.make_splits import SEED, fixed_test_draws, fold_draws

    if (test is None) == (folds is None):
        raise UserError("give either --test IDS (one test set) or --folds K (cross-validation)")
    if out.exists():
        raise UserError(f"{out} exists; choose another --out")
    if draws < 1:
        raise UserError(f"--draws must be at least 1, got {draws}")
    dataset = resolve_dataset(data_root, BTCV_LABELLED_IDS, err_console)
    ids = sorted(cid for cid, case in dataset.cases.items() if case.label is not None)
    seed = SEED if seed is None else seed
    if test is not None:
        test_ids = sorted({t.strip() for t in test.split(",") if t.strip()})
        if missing := [t for t in test_ids if t not in ids]:
            raise UserError(f"--test names cases {dataset.root} lacks: {', '.join(missing)}")
        if len(test_ids) >= len(ids):
            raise UserError("--test leaves no case to train on")
        subsets = fraction_sizes(fractions, len(ids) - len(test_ids))
        drawn = fixed_test_draws(ids, test_ids, {k: v for k, v in subsets.items() if v}, draws, seed)
        kind = f"test {len(test_ids)} cases"
    else:
        if not 2 <= folds <= len(ids):
            raise UserError(f"--folds must be between 2 and the {len(ids)} labelled cases, got {folds}")
        subsets = fraction_sizes(fractions, len(ids) - -(-len(ids) // folds))  # the smallest fold's training cases
        drawn = fold_draws(ids, folds, {k: v for k, v in subsets.items() if v}, seed)
        kind = f"{folds} folds (nnU-Net's assignment)"
    protocol = {
        "name": name,
        "description": f"{kind} of the {len(ids)} labelled cases of {dataset.root}",
        "dataset": str(dataset.root),
        "data_identity": data_identity(dataset, ids),
        "made_by": "bench splits make",
        "seed": seed,
        "fractions": drawn,
    }
    text = json.dumps(protocol, indent=2) + "\n"
    parse_protocol(text, str(out))  # what bench run will read
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    console.print(
        f"wrote {plain(out)}: {plain(protocol['description'])}; bench run --protocol {plain(out)}", highlight=False, soft_wrap=True
    )
