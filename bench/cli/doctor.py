"""``bench doctor``: the checks of ``bench.costs.doctor``, printed as they finish. Registered on the app by
``bench.cli.__main__``."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import PluginOption, console, method_names, use_plugins, user_errors
from bench.console import plain
from bench.errors import UserError

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


@user_errors
def doctor(
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: the device the checks and the training steps use.")] = "auto",
    profile: Annotated[str, typer.Option(help="paper, smoke or auto (smoke without CUDA): crop, batch and network sizes.")] = "auto",
    methods: Annotated[str, typer.Option(help="Comma-separated method names, 'all', or 'none' to skip the training steps.")] = "all",
    data_root: Annotated[Path | None, typer.Option(help="BTCV folder; default $BENCH_DATA_ROOT, else the synthetic abdomen.")] = None,
    sam_checkpoint: Annotated[Path | None, typer.Option(help="SAM ViT-B weights to check; default: the Hugging Face cache.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    plugin: PluginOption = None,
) -> None:
    """Check the setup before spending GPU hours: torch and CUDA, packages, the fused Mamba kernel, SAM weights,
    the data and the cache's free space, and one training step per method (time, peak memory, fit). Exit 1 if a check fails."""
    from bench.costs import doctor as checks_of
    from bench.costs import doctor_fit
    from bench.plan.profiles import resolve_profile
    from methods import get_method
    from splits import load_protocol

    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; choose auto, cpu or cuda")
    use_plugins(plugin)
    names = method_names(methods)
    for name in names:
        get_method(name)  # an unknown name is a user error, before anything runs
    checks = []

    def add(found) -> None:
        for check in found:
            checks.append(check)
            if not as_json:
                style = _STYLE[check.status]
                line = f"[{style}]{check.status:<4}[/{style}] {plain(check.name)}: {plain(check.detail)}"
                console.print(line, highlight=False, soft_wrap=True)
                if check.action:
                    console.print(f"     -> {plain(check.action)}", highlight=False, soft_wrap=True)

    environment, used = checks_of.environment_checks(device)
    add(environment)
    prof = resolve_profile(profile, has_cuda=used == "cuda")
    add([checks_of.package_check(), checks_of.cores_check()])
    add([checks_of.mamba_check(used or "cpu")])
    add(checks_of.sam_weights_checks(names, sam_checkpoint))
    add(doctor_fit.data_checks(data_root, prof.preprocess, load_protocol().all_ids()))
    if used is None:
        add([checks_of.Check("training steps", "fail", f"not run: no {device} device")])
    elif names:
        with nullcontext() if as_json else console.status("") as spinner:

            def starting(name: str) -> None:
                if spinner is not None:
                    spinner.update(f"one training step of {name}")

            add(doctor_fit.training_step_checks(names, prof, used, on_start=starting))
    failed = sum(c.status == "fail" for c in checks)
    if as_json:
        payload = {"ok": not failed, "device": used, "profile": prof.name, "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        warned = sum(c.status == "warn" for c in checks)
        console.print(f"{len(checks) - failed - warned} ok, {warned} warning(s), {failed} failed")
    if failed:
        raise typer.Exit(code=1)
