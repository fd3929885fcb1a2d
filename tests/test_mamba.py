from __future__ import annotations

import pytest
import torch

from methods.mamba import Mamba, mamba_ssm_available, scan_parity, selective_scan, selective_scan_reference


def random_scan_inputs(batch=2, length=77, d_inner=6, d_state=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, d_inner, generator=g, dtype=dtype)
    delta = torch.nn.functional.softplus(torch.randn(batch, length, d_inner, generator=g, dtype=dtype))
    A = -torch.exp(torch.randn(d_inner, d_state, generator=g, dtype=dtype))
    B = torch.randn(batch, length, d_state, generator=g, dtype=dtype)
    C = torch.randn(batch, length, d_state, generator=g, dtype=dtype)
    D = torch.randn(d_inner, generator=g, dtype=dtype)
    z = torch.randn(batch, length, d_inner, generator=g, dtype=dtype)
    return u, delta, A, B, C, D, z


@pytest.mark.parametrize("chunk", [None, 1, 5, 16, 64, 200])
def test_parallel_scan_matches_the_sequential_recurrence_in_float64(chunk):
    inputs = random_scan_inputs()
    expected = selective_scan_reference(*inputs)
    got = selective_scan(*inputs, chunk_size=chunk)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-6
    assert (got - expected).abs().max().item() < 1e-9


def test_gradients_match_the_sequential_recurrence():
    inputs = [t.clone().requires_grad_(True) for t in random_scan_inputs(length=40)]
    weights = torch.randn(inputs[0].shape, dtype=torch.float64)
    (selective_scan(*inputs, chunk_size=16) * weights).sum().backward()
    ours = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    (selective_scan_reference(*inputs) * weights).sum().backward()
    for mine, ref in zip(ours, (t.grad for t in inputs), strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-9, atol=1e-10)


def test_parameter_names_and_shapes_are_mamba_ssm_s():
    m = Mamba(96)  # d_inner 192, dt_rank 6
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "A_log": (192, 16),
        "D": (192,),
        "in_proj.weight": (384, 96),
        "conv1d.weight": (192, 1, 4),
        "conv1d.bias": (192,),
        "x_proj.weight": (6 + 32, 192),
        "dt_proj.weight": (192, 6),
        "dt_proj.bias": (192,),
        "out_proj.weight": (96, 192),
    }
    torch.testing.assert_close(-torch.exp(m.A_log[0]), -torch.arange(1.0, 17.0))
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6


def test_block_is_causal_and_keeps_shape():
    torch.manual_seed(0)
    m = Mamba(16, d_state=8).double()
    x = torch.randn(3, 50, 16, dtype=torch.float64)
    y = m(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 30:] += 1.0  # changing the future must not change the past
    torch.testing.assert_close(m(x2)[:, :30], y[:, :30])
    assert not torch.allclose(m(x2)[:, 30:], y[:, 30:])


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="must be positive"):
        Mamba(0)


@pytest.mark.skipif(
    not (torch.cuda.is_available() and mamba_ssm_available()),
    reason="needs a CUDA device and the mamba-ssm extra",
)
def test_cuda_kernel_matches_the_pytorch_scan():
    """Same weights, two backends: mamba-ssm's fused kernel on CUDA vs the PyTorch scan."""
    torch.manual_seed(0)
    m = Mamba(96).cuda()
    x = torch.randn(6, 576, 96, device="cuda")  # a dh plane of a 96^3 crop
    fused = m(x)
    fallback = m.cpu()(x.cpu())
    torch.testing.assert_close(fused.cpu(), fallback, rtol=1e-3, atol=1e-4)


def kernel_in_mamba_ssm_convention(skip_honoured: bool = True):
    """mamba-ssm's ``selective_scan_fn`` calling convention ((B, Din, L) layout, delta bias and
    softplus applied inside) over the step-by-step reference, so that the parity check can be
    exercised without CUDA. ``skip_honoured=False`` is a kernel with a bug: it drops the D u term."""

    def kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        delta = delta + delta_bias[:, None]
        if delta_softplus:
            delta = torch.nn.functional.softplus(delta)

        def t(x):
            return x.transpose(1, 2)

        return t(selective_scan_reference(t(u), t(delta), A, t(B), t(C), D if skip_honoured else None, t(z)))

    return kernel


def test_scan_parity_passes_a_kernel_that_computes_the_same_scan():
    result = scan_parity(kernel_in_mamba_ssm_convention(), device="cpu", length=64)
    assert result["equal"]
    assert result["forward_error"] < 1e-5 and result["gradient_error"] < 1e-5


def test_scan_parity_fails_a_kernel_that_drops_the_skip_term():
    result = scan_parity(kernel_in_mamba_ssm_convention(skip_honoured=False), device="cpu", length=64)
    assert not result["equal"]
    assert result["forward_error"] > result["tolerance"]["forward"]


@pytest.mark.skipif(
    not (torch.cuda.is_available() and mamba_ssm_available()),
    reason="needs a CUDA device and the mamba-ssm extra",
)
def test_mamba_ssm_kernel_passes_the_parity_check_bench_doctor_runs():
    result = scan_parity(device="cuda")
    assert result["equal"], result
