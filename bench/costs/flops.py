"""What the methods cost to run, counted: params and one forward's GMACs per method (fvcore, through
``methods.macs.count_macs``, which every run's recorded GMACs also use), and the GMACs each adapter
adds to a SAM ViT-B block (the paper's Figure 1(c)).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from methods.macs import MacCount, count_macs

__all__ = ["MacCount", "count_macs", "method_costs", "adapter_table", "save_adapter_chart"]


# Published figures at a 96^3 input, 14 classes: the comparison table of 3D UX-Net (Lee et al.,
# ICLR 2023), whose "GFLOPs" are multiply-accumulates as fvcore counts them.
PUBLISHED = {
    "unetr": {"params_m": 92.8, "gmacs": 82.6},
    "swinunetr": {"params_m": 62.2, "gmacs": 328.4},
    "transbts": {"params_m": 31.6, "gmacs": 110.4},
    "uxnet": {"params_m": 53.0, "gmacs": 639.4},
}


def method_costs(names, input_size: int, size: str = "paper") -> tuple[list[dict], dict[str, int]]:
    """Params and one-forward GMACs of each method at a cubic input, or at the patch its own pipeline
    plans (as it runs: SAM methods with unpadded window attention, and their GMACs with timm's padded
    windows beside); merged uncounted ops."""
    from methods import count_parameters, create_model, get_method
    from methods.registry import counted_at

    rows, uncounted = [], Counter()
    for name in names:
        info = get_method(name)
        at = counted_at(info, input_size)
        x = torch.rand(1, 1, *at.roi_size)
        torch.manual_seed(0)
        model = create_model(name, size=size, roi_size=at.roi_size, **at.options)
        total, trainable = count_parameters(model)
        count = count_macs(model, x)
        uncounted.update(count.uncounted)
        padded_gmacs = None
        if "attention" in info.paper:  # SAM methods: also what timm's padded windows cost
            del model
            torch.manual_seed(0)
            model = create_model(name, size=size, roi_size=at.roi_size, attention="padded", **at.options)
            padded_gmacs = round(count_macs(model, x).gmacs, 3)
        published = PUBLISHED.get(name, {}) if tuple(at.roi_size) == (96,) * 3 else {}  # published at 96^3 only
        rows.append(
            {
                "name": name,
                "family": info.family,
                "input": at.label,
                "input_what": at.what,
                "params_total": total,
                "params_trainable": trainable,
                "gmacs": round(count.gmacs, 3),
                "gmacs_padded_attention": padded_gmacs,
                "published_params": published.get("params_m", None) and published["params_m"] * 1e6,
                "published_gmacs": published.get("gmacs"),
            }
        )
        del model
    return rows, dict(uncounted)


def adapter_table(input_size: int = 96, rank: int = 96, slice_scale: int = 1) -> tuple[list[dict], dict, dict[str, int]]:
    """GMACs one SAM ViT-B block gains from each adapter (Figure 1c), and the blocks' own GMACs.

    Tokens of one volume: D = input_size slices of (input_size * slice_scale / 16)^2 tokens, C = 768;
    the adapters and blocks are ``methods.figure1c``'s.
    """
    from methods.figure1c import figure1c_setup

    setup = figure1c_setup(input_size, rank, slice_scale)
    uncounted: Counter = Counter()

    def macs(module: nn.Module) -> float:
        count = count_macs(module, setup.tokens)
        uncounted.update(count.uncounted)
        return count.gmacs

    adapters = {
        name: (macs(module) - (macs(without) if without is not None else 0.0), params)
        for name, (module, without, params) in setup.adapters.items()
    }
    lora_gmacs = adapters["lora"][0]
    rows = [
        {"name": name, "gmacs_per_block": round(g, 4), "ratio_to_lora": round(g / lora_gmacs, 2), "params": p}
        for name, (g, p) in adapters.items()
    ]
    padded_gmacs, unpadded_gmacs = macs(setup.window_block), macs(setup.window_block_unpadded)
    blocks = {
        "window_block": round(padded_gmacs, 3),
        "window_block_unpadded": round(unpadded_gmacs, 3),
        "window_padding_cost": round(padded_gmacs - unpadded_gmacs, 3),
        "global_block": round(macs(setup.global_block), 3),
        "tokens_per_slice": setup.tokens.shape[1] * setup.tokens.shape[2],
        "window_size": setup.window_size,
    }
    return rows, blocks, dict(uncounted)


def save_adapter_chart(rows: list[dict], path, title: str) -> None:
    """Figure 1(c): the GMACs each adapter adds to one ViT block, as a PNG."""
    from bench.reporting.figures import adapter_figure, save_png

    save_png(adapter_figure(rows, title), path)
