from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.costs.flops import count_macs
from methods.mamba import Mamba


class ConvNet(nn.Module):
    """Convolutions, a transposed convolution and a linear layer, no norms (which only fvcore counts)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 8, 3, padding=1)
        self.down = nn.Conv3d(8, 16, 2, stride=2)
        self.mix = nn.Linear(16, 16)
        self.up = nn.ConvTranspose3d(16, 4, 2, stride=2)

    def forward(self, x):
        h = self.down(self.conv(x))
        h = self.mix(h.movedim(1, -1)).movedim(-1, 1)
        return self.up(h)


class Attention(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


def test_fvcore_matches_torch_flop_counter():
    """An independent counter (2 flops per MAC) agrees on convolutions and linear layers."""
    model, x = ConvNet().eval(), torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert count_macs(model, x).gmacs == pytest.approx(counter.get_total_flops() / 2e9, rel=1e-9)


def test_sdpa_handle_counts_what_explicit_attention_costs():
    q, k, v = torch.randn(2, 3, 40, 8), torch.randn(2, 3, 24, 8), torch.randn(2, 3, 24, 5)
    fused, explicit = count_macs(Attention(True), q, k, v), count_macs(Attention(False), q, k, v)
    assert fused.gmacs == pytest.approx(explicit.gmacs, rel=1e-9) and fused.gmacs == pytest.approx(2 * 3 * 40 * 24 * (8 + 5) / 1e9)
    assert "aten::scaled_dot_product_attention" not in fused.uncounted


def test_mamba_is_counted_with_the_mamba_authors_convention():
    d_model, length, batch = 16, 50, 3
    m = Mamba(d_model, d_state=8)
    d_inner, dt_rank, n = m.d_inner, m.dt_rank, m.d_state
    expected = (
        batch
        * length
        * (
            d_model * 2 * d_inner  # in_proj
            + d_inner * m.d_conv  # depthwise causal conv
            + d_inner * (dt_rank + 2 * n)  # x_proj
            + dt_rank * d_inner  # dt_proj
            + 9 * d_inner * n
            + 2 * d_inner  # selective scan + D skip + z gate
            + d_inner * d_model  # out_proj
        )
    )
    count = count_macs(m, torch.randn(batch, length, d_model))
    assert count.gmacs * 1e9 == pytest.approx(expected, rel=0.02)  # the conv counts its padded tail too
    assert "sam3d_bench::selective_scan" not in count.uncounted


def test_self_attention_adapter_reproduces_figure_1c():
    """18.86 GMACs at 96^3, r = 96: attention over all 3456 tokens at C = 768 plus the C<->r projections."""
    from bench.costs.flops import adapter_table

    rows, blocks, _ = adapter_table(96, 96)
    by_name = {r["name"]: r for r in rows}
    assert by_name["sa"]["gmacs_per_block"] == pytest.approx(18.86, rel=0.01)
    n, c, r = 96 * 6 * 6, 768, 96
    assert by_name["lora"]["gmacs_per_block"] == pytest.approx(4 * n * c * r / 1e9, rel=1e-3)  # q and v: down + up
    assert by_name["lora"]["params"] == 4 * c * r
    for row in rows:
        assert row["ratio_to_lora"] == pytest.approx(row["gmacs_per_block"] / by_name["lora"]["gmacs_per_block"], rel=0.01)
    # Without padding a window block over 6x6 tokens costs what a global block over them costs, plus
    # the virtual key (one more key per query), relative positions to all 14 rows and columns of the
    # window (8 more each) and the qkv of one zero token.
    heads, d, slices, queries = 12, 64, 96, 36
    extra = slices * heads * queries * (1 * 2 * d + 2 * (14 - 6) * d) + 768 * 3 * 768
    assert blocks["window_block_unpadded"] - blocks["global_block"] == pytest.approx(extra / 1e9, abs=2e-3)
    assert blocks["window_block"] == pytest.approx(66.8, abs=0.1) and blocks["window_padding_cost"] == pytest.approx(42.0, abs=0.1)


def test_bench_flops_json_and_chart(tmp_path):
    from typer.testing import CliRunner

    from bench.cli.__main__ import app

    args = ["flops", "--input", "32", "--rank", "16", "--methods", "nnunet,unetr", "--json", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"unit", "input", "rank", "slice_scale", "adapters", "vit_blocks", "methods", "uncounted_ops"}
    assert data["unit"] == "GMACs" and data["input"] == 32 and data["rank"] == 16
    assert [a["name"] for a in data["adapters"]] == ["lora", "conv3d", "sa", "tpmamba"]
    rows = {r["name"]: r for r in data["methods"]}
    assert rows["nnunet"]["params_total"] == 16_553_400 and rows["nnunet"]["gmacs"] > 0
    assert rows["unetr"]["published_gmacs"] is None  # published figures are at 96^3 only
    assert all({"op", "count"} == set(u) for u in data["uncounted_ops"])
    assert (tmp_path / "fig1c_adapters.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["flops", "--input", "40", "--methods", "none"])
    assert bad.exit_code == 2 and "multiple of 16" in bad.output


def test_published_figures_stand_beside_ours_at_96():
    """3D UX-Net's table gives UNETR 92.8 M parameters and 82.6 GMACs at 96^3; ours is counted, not copied."""
    from bench.costs.flops import method_costs

    (row,), uncounted = method_costs(["unetr"], 96)
    assert row["published_params"] == pytest.approx(92.8e6) and row["published_gmacs"] == 82.6
    assert row["params_total"] == 92_802_478 and 60 < row["gmacs"] < 90 and row["gmacs"] != row["published_gmacs"]
