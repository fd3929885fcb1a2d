"""Multiply-accumulate counts with fvcore, including the ops it does not know by itself.

fvcore counts one fused multiply-add as one "flop" (so its totals are MACs, reported as GMACs) and
traces the model with torch.jit. It has no handler for scaled-dot-product attention (timm's SAM
uses it), trilinear upsampling, or a selective scan; handles for them are registered here:
- ``aten::scaled_dot_product_attention``: Q K^T and A V, B*H*L*S*(E + Ev) MACs;
- ``aten::upsample_trilinear3d``: 8 MACs per output voxel (nearest-neighbour upsampling: 0);
- ``sam3d_bench::selective_scan`` (the harness's Mamba scan, traced as one op): the Mamba authors'
  convention, 9*B*L*D*N for the scan plus B*D*L for the D skip and B*D*L for the z gate.
Any op still without a handle is returned by name with its count, never silently taken as zero.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def _shape(value) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return list(get_shape(value))


def sdpa_macs(inputs, outputs) -> int:
    q, k, v = (_shape(t) for t in inputs[:3])
    batch = int(np.prod(q[:-2]))
    length, embed = q[-2], q[-1]
    source = k[-2]
    return batch * length * source * (embed + v[-1])


def trilinear_macs(inputs, outputs) -> int:
    return 8 * int(np.prod(_shape(outputs[0])))


def selective_scan_macs(inputs, outputs) -> int:
    batch, length, d_inner = _shape(inputs[0])
    d_state = _shape(inputs[2])[1]
    return 9 * batch * length * d_inner * d_state + 2 * batch * d_inner * length


HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_macs,
    "aten::upsample_trilinear3d": trilinear_macs,
    "aten::upsample_nearest3d": lambda inputs, outputs: 0,
    "sam3d_bench::selective_scan": selective_scan_macs,
}


@dataclass(frozen=True)
class MacCount:
    gmacs: float
    uncounted: dict[str, int]  # op name -> times it was met without a handle


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> MacCount:
    """GMACs of one forward of ``model`` on ``inputs`` (eval mode, no grad)."""
    with warnings.catch_warnings():
        # fvcore's package scripts its focal loss at import, which torch >= 2.10 marks as deprecated:
        # a warning about code the count never runs.
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, inputs)
            for name, handle in HANDLES.items():
                analysis.set_op_handle(name, handle)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = analysis.total()
            uncounted = dict(Counter(analysis.unsupported_ops()))
    finally:
        model.train(was_training)
    return MacCount(total / 1e9, uncounted)
