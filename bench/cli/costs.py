"""``bench list``, ``bench flops`` and ``bench speed``: what each method costs in parameters,
multiply-accumulates, time and memory. Registered on the app by ``bench.cli.__main__``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.common import PluginOption, console, err_console, method_names, use_plugins, user_errors
from bench.console import plain
from bench.errors import UserError


@user_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False, plugin: PluginOption = None) -> None:
    """Registered methods, built in or from plugins, with parameter counts of the paper-size models
    (96^3 input, 14 classes; a method that plans its own patch at that patch)."""
    from methods import count_parameters, list_methods
    from methods.registry import build_on_meta, counted_at

    use_plugins(plugin)
    rows = []
    for info in list_methods():
        at = counted_at(info, 96)
        # Counted on the meta device: nothing is allocated or initialised.
        total, trainable = count_parameters(build_on_meta(info.name, size="paper", roi_size=at.roi_size, **at.options))
        rows.append(
            {
                "name": info.name,
                "family": info.family,
                "source": info.source.describe(),
                "revision": info.revision,
                "params_total": total,
                "params_trainable": trainable,
                "counted_input": at.label,
                "counted_input_what": at.what,
                "reference": info.reference,
                "weights": info.weights,
                "notes": info.notes,
                "hyperparameters": dict(info.paper),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=list) + "\n")
        return
    table = Table(title="Registered methods (paper-size, 96^3 input, 14 classes); references: bench list --json")
    for column in ("name", "family", "source", "params total (M)", "trainable (M)", "notes"):
        table.add_column(column)
    for row in sorted(rows, key=lambda r: (r["family"], r["name"])):
        total, trainable = f"{row['params_total'] / 1e6:.2f}", f"{row['params_trainable'] / 1e6:.2f}"
        table.add_row(row["name"], row["family"], plain(row["source"]), total, trainable, plain(row["notes"]))
    console.print(table)
    for row in rows:
        if row["counted_input_what"]:
            console.print(f"{row['name']} is counted at {plain(row['counted_input_what'])}.", soft_wrap=True)


@user_errors
def flops(
    input: Annotated[int, typer.Option("--input", help="Cubic input size (voxels) of the counted forward.")] = 96,
    rank: Annotated[int, typer.Option(help="Adapter width r for the per-block adapter table (Figure 1c).")] = 96,
    slice_scale: Annotated[int, typer.Option(help="1: slices at native size; 2: x2 upsampled (the authors' ablation).")] = 1,
    methods: Annotated[str, typer.Option(help="Comma-separated method names, 'all', or 'none' for the adapter table only.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for a Figure 1(c)-style bar chart PNG.")] = None,
    plugin: PluginOption = None,
) -> None:
    """GMACs (fvcore multiply-accumulates): what each adapter adds to a SAM block, and each method's forward."""
    from bench.costs.flops import adapter_table, method_costs, save_adapter_chart
    from methods import get_method
    from methods.registry import check_input_size, counted_at

    use_plugins(plugin)
    names = method_names(methods)
    if input < 16 or input % 16:
        raise UserError(f"--input must be a positive multiple of 16 (SAM's patch size), got {input}")
    if rank < 4 or rank % 4:
        raise UserError(f"--rank must be a positive multiple of 4 (TP-Mamba's four branches), got {rank}")
    if slice_scale not in (1, 2):
        raise UserError(f"--slice-scale must be 1 or 2, got {slice_scale}")
    for name in names:
        try:
            check_input_size(get_method(name), counted_at(get_method(name), input).roi_size)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    adapters, blocks, uncounted = adapter_table(input, rank, slice_scale)
    rows, method_uncounted = method_costs(names, input) if names else ([], {})
    for op, n in method_uncounted.items():
        uncounted[op] = uncounted.get(op, 0) + n
    uncounted_list = [{"op": op, "count": n} for op, n in sorted(uncounted.items())]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_adapter_chart(adapters, out / "fig1c_adapters.png", f"GMACs added per ViT block, input {input}^3, r = {rank}")
    if as_json:
        payload = {
            "unit": "GMACs",
            "input": input,
            "rank": rank,
            "slice_scale": slice_scale,
            "adapters": adapters,
            "vit_blocks": blocks,
            "methods": rows,
            "uncounted_ops": uncounted_list,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = Table(title=f"GMACs one SAM ViT-B block gains from each adapter: input {input}^3, r = {rank}, slice scale {slice_scale}")
    for column in ("adapter", "GMACs / block", "x LoRA", "params"):
        table.add_column(column, justify="left" if column == "adapter" else "right")
    for r in adapters:
        table.add_row(r["name"], f"{r['gmacs_per_block']:.3f}", f"{r['ratio_to_lora']:g}", f"{r['params']:,}")
    console.print(table)
    console.print(
        f"ViT-B block at {blocks['tokens_per_slice']} tokens per slice: window block {blocks['window_block']:.1f} GMACs as timm "
        f"pads each slice to a {blocks['window_size']}x{blocks['window_size']} window, {blocks['window_block_unpadded']:.1f} as it "
        f"runs here (exact, without padding tokens; padding would cost {blocks['window_padding_cost']:.1f}), "
        f"global block {blocks['global_block']:.1f}.",
        soft_wrap=True,
    )
    if rows:
        table = Table(title=f"One forward at {input}^3, 14 classes; GMACs = 10^9 multiply-accumulates (fvcore)")
        columns = (
            "method",
            "family",
            "input",
            "params (M)",
            "trainable (M)",
            "GMACs",
            "GMACs padded attention",
            "published params (M)",
            "published GMACs",
        )
        for column in columns:
            table.add_column(column, justify="left" if column in ("method", "family") else "right")
        for r in rows:
            pub_p = f"{r['published_params'] / 1e6:.1f}" if r["published_params"] else "-"
            pub_g = f"{r['published_gmacs']:.1f}" if r["published_gmacs"] else "-"
            table.add_row(
                r["name"],
                r["family"],
                r["input"],
                f"{r['params_total'] / 1e6:.2f}",
                f"{r['params_trainable'] / 1e6:.2f}",
                f"{r['gmacs']:.1f}",
                f"{r['gmacs_padded_attention']:.1f}" if r["gmacs_padded_attention"] else "-",
                pub_p,
                pub_g,
            )
        console.print(table)
        for r in rows:
            if r["input_what"]:
                console.print(f"{r['name']} is counted at {plain(r['input_what'])}: its own pipeline plans its patch.", soft_wrap=True)
    if uncounted:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(uncounted.items()))
        console.print(f"not counted (no handle; element-wise ops are left out by convention): {listed}", soft_wrap=True)
    if out is not None:
        console.print(f"chart: {plain(out / 'fig1c_adapters.png')}")


@user_errors
def speed(
    methods: Annotated[str, typer.Option(help="Comma-separated method names, or 'all'.")] = "all",
    input: Annotated[int | None, typer.Option("--input", help="Cubic crop size; default: the profile's crop.")] = None,
    profile: Annotated[str, typer.Option(help="paper, smoke or auto (smoke without CUDA): model sizes and crops per step.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    steps: Annotated[int, typer.Option(help="Timed training steps per method (after 2 warm-up steps).")] = 5,
    scoring: Annotated[
        bool, typer.Option(help="Also time original-space scoring of one 512x512x150 case (0.78 x 0.78 x 2.5 mm) and its peak memory.")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="PyTorch threads (default: the cores this process is given).", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    plugin: PluginOption = None,
) -> None:
    """Training-step time, sliding-window time and peak memory per method, and the loader's crops per second."""
    from bench.costs.speed import ASSUMED_CASE_MM, loader_crops_per_second, measure, original_space_scoring_cost, paper_grid_hours
    from bench.device import busy_warning, cores_given, resolve_device, set_threads
    from bench.plan.profiles import resolve_profile
    from bench.provenance import hardware, package_versions
    from methods import get_method
    from methods.registry import check_input_size
    from splits import load_protocol

    use_plugins(plugin)
    dev = resolve_device(device)
    prof = resolve_profile(profile, has_cuda=dev == "cuda")
    roi = input or prof.roi
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    names = method_names(methods)
    used = set_threads(threads)  # before hardware() reads it into the report
    if dev == "cpu" and (busy := busy_warning(cores_given(), used)):
        err_console.print(f"[yellow]warning: {plain(busy)}[/yellow]")
    for name in names:
        try:
            check_input_size(get_method(name), (roi,) * 3, prof.model_size)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    loader = loader_crops_per_second(roi, prof.crops_per_case, prof.augment)
    rows = [measure(name, prof.model_size, roi, prof.crops_per_case, dev, steps) for name in names]
    scoring_cost = original_space_scoring_cost(profile_spacing_mm=prof.preprocess.spacing_mm) if scoring else None
    scoring_s = (scoring_cost["to_original_grid_s"] + scoring_cost["score_s"]) if scoring_cost else 0.0
    if prof.published_size:  # CPU-sized networks say nothing about the paper grid's cost
        for row in rows:
            row["paper_grid"] = paper_grid_hours(row, prof, load_protocol(), scoring_s)
    report = {
        "device": dev,
        "hardware": hardware(dev),
        "versions": package_versions(),
        "profile": prof.name,
        "input": roi,
        "loader_crops_per_s": round(loader, 1),
        "methods": rows,
    }
    if prof.published_size and rows:
        report["paper_grid_hours_total"] = round(sum(r["paper_grid"]["hours"] for r in rows), 2)
        report["paper_grid_assumes"] = f"a test case's body of {' x '.join(f'{mm:g}' for mm in ASSUMED_CASE_MM)} mm" + (
            "; original-space scoring as measured by --scoring" if scoring_cost else "; original-space scoring not included (add --scoring)"
        )
    if scoring_cost is not None:
        report["original_space_scoring"] = scoring_cost
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"Costs on {dev} ({report['hardware'].get('gpu', report['hardware']['cpu'])}), profile {prof.name}, crop {roi}^3")
    for column in ("method", "train step (s)", "crops/s trained", "sliding window (s)", "peak memory (MiB)", "paper grid (h)"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['train_step_s']:.3f}",
            f"{r['train_crops_per_s']:.1f}",
            f"{r['sliding_window_s']:.2f}",
            f"{r['peak_memory_mib']:.0f}",
            f"{r['paper_grid']['hours']:,.1f}" if "paper_grid" in r else "-",
        )
    console.print(table)
    if "paper_grid_hours_total" in report:
        runs = rows[0]["paper_grid"]["runs"]
        console.print(
            f"paper grid on this device: {report['paper_grid_hours_total']:,.1f} device-hours for {len(rows)} "
            f"method{'s' if len(rows) != 1 else ''} x {runs} runs each "
            f"({report['paper_grid_assumes']})",
            soft_wrap=True,
        )
    else:
        console.print("paper grid hours: measured with --profile paper only (smoke-size networks say nothing about it)")
    console.print(
        f"data pipeline: {loader:.0f} crops/s per loader process (a step consumes {prof.crops_per_case}); "
        f"peak memory is {rows[0]['peak_memory_kind'] if rows else 'n/a'}",
        soft_wrap=True,
    )
    if scoring_cost is not None:
        c = scoring_cost
        console.print(
            f"original-space scoring of a {'x'.join(map(str, c['case_shape']))} case: back to its grid "
            f"{c['to_original_grid_s']:.1f} s, Dice/NSD/HD95 of 13 organs {c['score_s']:.1f} s; "
            f"probabilities {c['probabilities_mib']:.0f} MiB, process peak {c['peak_rss_mib']:.0f} MiB",
            soft_wrap=True,
        )
