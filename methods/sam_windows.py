"""SAM's windowed attention without the padding, exactly.

SAM ViT-B attends within 14 x 14 windows; a token grid that does not fill its windows (6 x 6 tokens
for a 96 x 96 slice, 12 x 12 at twice that, the edge windows of any grid not divisible by 14) is
padded with zeros after ``norm1``, and timm's block then runs qkv, attention and the output
projection on every padding token (at 6 x 6 tokens, 160 of 196). The result can be had without
them:

- A padding token is zero, so its key and value are the qkv projection of a zero token: the bias
  ``b_k``, ``b_v`` plus whatever an adapter on qkv gives at zero (nothing for LoRA and FacT, which
  have no bias). They are computed by running the block's own qkv on one zero token, so any
  token-wise qkv adapter is covered.
- SAM's relative-position bias is decomposed: query q's logit at key (h, w) is
  ``scale q.k + Rh(q, h) + Rw(q, w)``. Over the padding keys of a window (outside the valid
  ``vh x vw`` corner) every key is ``b_k``, so their total weight is
  ``exp(scale q.b_k) * [S_h S_w - s_h s_w]`` with ``S_h = sum_{h<14} e^{Rh(q,h)}``,
  ``s_h = sum_{h<vh} e^{Rh(q,h)}`` (w alike), and their weighted value that weight times ``b_v``.
- One virtual key per window with ``k = b_k``, ``v = b_v`` and ``log(S_h S_w - s_h s_w)`` as its
  additive bias therefore gives the padded softmax exactly, with attention over ``vh * vw + 1``
  keys and no projection of padding tokens. The bracket is computed as ``P_h S_w + s_h P_w``
  (``P`` = the sums over padding rows / columns) in log space: a sum of positive terms, so float32
  loses nothing to cancellation.

Windows are grouped by their valid size (at most four groups: inner, right edge, bottom edge,
corner), each group run as one batch. ``SamBlock`` is timm's block with this attention; its
``attention="padded"`` keeps timm's computation for comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer_sam import Block, get_rel_pos, window_partition, window_unpartition
from torch import nn

ATTENTION_MODES = ("unpadded", "padded")


def _windowed_group(
    attn: nn.Module,
    tokens: torch.Tensor,
    rel_tables: tuple[torch.Tensor, torch.Tensor],
    virtual: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Attention of windows whose valid tokens are ``tokens`` (N, vh, vw, C) -> (N, vh, vw, C); with
    ``virtual`` (k, v of a zero token, (heads, d) each) the window's padding is represented by one key."""
    n_windows, vh, vw, channels = tokens.shape
    heads, d = attn.num_heads, attn.head_dim
    n = vh * vw
    qkv = attn.qkv(tokens.reshape(n_windows, n, channels)).view(n_windows, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, n_windows * heads, n, d).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    rel_h_table = rel_tables[0][:vh]  # (vh, window, d): rows of the valid queries
    rel_w_table = rel_tables[1][:vw]
    r_q = q.reshape(-1, vh, vw, d)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h_table)  # (., vh, vw, window): every key row of the window
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w_table)
    bias = (rel_h[..., :vh, None] + rel_w[..., None, :vw]).reshape(-1, n, n)
    if virtual is not None:
        k_zero, v_zero = virtual
        # S_h S_w - s_h s_w = P_h S_w + s_h P_w with P the sums over the padding rows / columns:
        # positive terms only, so no cancellation in float32. An edge without padding has P = 0 (-inf).
        lse = torch.logsumexp
        log_padding = torch.logaddexp(
            lse(rel_h[..., vh:], -1) + lse(rel_w, -1),
            lse(rel_h[..., :vh], -1) + lse(rel_w[..., vw:], -1),
        )
        k = torch.cat([k, attn.k_norm(k_zero).repeat(n_windows, 1)[:, None]], dim=1)
        v = torch.cat([v, v_zero.repeat(n_windows, 1)[:, None]], dim=1)
        bias = torch.cat([bias, log_padding.reshape(-1, n, 1)], dim=-1)
    dropout = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout, scale=attn.scale)
    out = out.view(n_windows, heads, n, d).transpose(1, 2).reshape(n_windows, n, channels)
    return attn.proj_drop(attn.proj(out)).view(n_windows, vh, vw, channels)


def unpadded_window_attention(attn: nn.Module, x: torch.Tensor, window: int) -> torch.Tensor:
    """timm's ``window_unpartition(attn(window_partition(x)))`` for tokens x (B, H, W, C) after
    ``norm1``, computed without padding tokens (see the module's docstring)."""
    b, h, w, channels = x.shape
    heads, d = attn.num_heads, attn.head_dim
    virtual = None
    if h % window or w % window:
        zero = attn.qkv(x.new_zeros(1, channels)).view(3, heads, d)
        virtual = (zero[1], zero[2])
    # The window's relative-position tables, once for all its groups of windows.
    rel_tables = (get_rel_pos(window, window, attn.rel_pos_h), get_rel_pos(window, window, attn.rel_pos_w))
    out = torch.empty_like(x)
    full_h, full_w = (h // window) * window, (w // window) * window
    for r0, r1 in ((0, full_h), (full_h, h)):
        for c0, c1 in ((0, full_w), (full_w, w)):
            if r1 <= r0 or c1 <= c0:
                continue
            vh, vw = min(window, r1 - r0), min(window, c1 - c0)
            rows, cols = (r1 - r0) // vh, (c1 - c0) // vw
            block = x[:, r0:r1, c0:c1].reshape(b, rows, vh, cols, vw, channels).permute(0, 1, 3, 2, 4, 5)
            padded = vh < window or vw < window
            y = _windowed_group(attn, block.reshape(-1, vh, vw, channels), rel_tables, virtual if padded else None)
            out[:, r0:r1, c0:c1] = y.view(b, rows, cols, vh, vw, channels).permute(0, 1, 3, 2, 4, 5).reshape(b, r1 - r0, c1 - c0, channels)
    return out


class SamBlock(Block):
    """timm's SAM block (same parameters and names) whose windowed attention runs without padding
    tokens (``attention = "unpadded"``, exact) or as timm computes it (``"padded"``)."""

    attention_mode: str = "unpadded"

    def attention(self, y: torch.Tensor) -> torch.Tensor:
        """The attention branch on ``y = norm1(x)`` (B, H, W, C), before LayerScale and drop-path."""
        if self.window_size == 0:
            return self.attn(y)
        if self.attention_mode == "unpadded":
            return unpadded_window_attention(self.attn, y, self.window_size)
        h, w = y.shape[1:3]
        windows, pad_hw = window_partition(y, self.window_size)
        return window_unpartition(self.attn(windows), self.window_size, (h, w), pad_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attention(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def set_attention(vit: nn.Module, mode: str) -> None:
    """Choose how every SamBlock of a ViT computes windowed attention."""
    if mode not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
    for module in vit.modules():
        if isinstance(module, SamBlock):
            module.attention_mode = mode
