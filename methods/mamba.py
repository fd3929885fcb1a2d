"""Mamba (Gu & Dao, 2023) block that runs everywhere, with mamba-ssm's parameter names and shapes.

``Mamba(d_model, d_state=16, d_conv=4, expand=2)`` holds ``in_proj, conv1d, x_proj, dt_proj, A_log,
D, out_proj`` exactly as ``mamba_ssm.Mamba`` does, so a state dict moves between the two. On CUDA
tensors with mamba-ssm installed the fused kernels run; everywhere else a pure-PyTorch selective
scan does, which is

- vectorised over the sequence: a chunk of T steps is solved with a log2(T)-step parallel
  (Hillis-Steele) scan of the linear recurrence h_t = a_t * h_{t-1} + b_t, so there is a Python
  loop over chunks, never over time steps;
- bounded in memory: the (batch, T, d_inner, d_state) tensors exist for one chunk at a time, and
  during training each chunk is recomputed in the backward pass (activation checkpointing), so
  what is kept grows with L * d_inner, not L * d_inner * d_state. That matters on TP-Mamba's
  depth-height and depth-width planes, whose sequences are D*h long.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

try:  # CUDA-only optional extra; the package must import without it.
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except Exception:  # noqa: BLE001  (ImportError, or a missing/compiled-elsewhere kernel library)
    _cuda_selective_scan = None

# Elements of one chunk's (batch, T, d_inner, d_state) tensors. Small enough to stay in a CPU's
# cache and bounded whatever the sequence length or batch; large enough to amortise the per-chunk
# overhead on a GPU.
CHUNK_ELEMENTS = 1 << 20


def mamba_ssm_available() -> bool:
    return _cuda_selective_scan is not None


def _scan_chunk(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """All states of h_t = a_t * h_{t-1} + b_t for one chunk; a, b: (B, T, D, N), h0: (B, D, N).

    Hillis-Steele doubling: after the step with offset k, b_t holds the recurrence folded over the
    last 2k inputs and a_t the product of their decays. Shifting by zero/one padding keeps every
    step to whole-tensor operations.
    """
    b = torch.cat([b[:, :1] + a[:, :1] * h0[:, None], b[:, 1:]], dim=1)
    length = a.shape[1]
    step = 1
    while step < length:
        b = b + a * F.pad(b[:, :-step], (0, 0, 0, 0, step, 0))
        if 2 * step < length:  # the last step needs no decay products
            a = a * F.pad(a[:, :-step], (0, 0, 0, 0, step, 0), value=1.0)
        step *= 2
    return b


def _chunk_outputs(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y without skip/gate (B, T, D), last state (B, D, N)) for one chunk."""
    a = torch.exp(delta[..., None] * A)  # (B, T, D, N), in (0, 1] since A < 0, delta > 0
    b = (delta * u)[..., None] * B[:, :, None, :]
    h = _scan_chunk(a, b, h0)
    y = torch.einsum("btdn,btn->btd", h, C)
    return y, h[:, -1]


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Selective scan in PyTorch. Shapes: u, delta, z (B, L, Din); A (Din, N); B, C (B, L, N); D (Din,).

    delta is already positive (softplus applied). Returns y (B, L, Din):
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  y_t = C_t . h_t + D u_t,  y *= silu(z).
    chunk_size None picks the largest power of two whose chunk tensors fit CHUNK_ELEMENTS.
    """
    batch, length, d_inner = u.shape
    if chunk_size is None:
        per_step = batch * d_inner * A.shape[1]
        chunk_size = 1 << max(int(math.log2(max(CHUNK_ELEMENTS // per_step, 1))), 0)
    h = u.new_zeros(batch, d_inner, A.shape[1])
    outputs = []
    # Recomputing chunks in the backward pass bounds memory only when there is more than one.
    recompute = length > chunk_size and torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        args = (u[:, start:stop], delta[:, start:stop], A, B[:, start:stop], C[:, start:stop], h)
        if recompute:
            y, h = checkpoint(_chunk_outputs, *args, use_reentrant=False)
        else:
            y, h = _chunk_outputs(*args)
        outputs.append(y)
    y = torch.cat(outputs, dim=1)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y


@torch.library.custom_op("sam3d_bench::selective_scan", mutates_args=())
def selective_scan_op(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """The PyTorch scan as one named operator, used while tracing so that FLOP counters (fvcore traces
    with torch.jit) see a selective scan, not hundreds of element-wise ops, and can apply the Mamba
    authors' cost convention to it."""
    return selective_scan(u, delta, A, B, C, D, z)


@selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z):
    return torch.empty_like(u)


def selective_scan_reference(u, delta, A, B, C, D=None, z=None) -> torch.Tensor:
    """The recurrence one time step at a time: the definition the fast paths are tested against."""
    batch, length, d_inner = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y


def fused_selective_scan(kernel, u, delta_raw, A, B, C, D, z, delta_bias) -> torch.Tensor:
    """mamba-ssm's fused ``selective_scan_fn`` called in this module's (B, L, Din) layout.

    The kernel wants (B, Din, L) and (B, N, L) and applies the delta bias and softplus itself, so it
    takes ``delta_raw`` (before bias); :func:`selective_scan` takes delta after both.
    """
    return kernel(
        u.transpose(1, 2).contiguous(),
        delta_raw.transpose(1, 2).contiguous(),
        A,
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        D,
        z=z.transpose(1, 2).contiguous(),
        delta_bias=delta_bias,
        delta_softplus=True,
    ).transpose(1, 2)


# Largest error allowed between the fused kernel and the PyTorch scan, relative to the largest
# magnitude of the compared tensor: both compute in float32 but sum in different orders, and the
# gradients pass through longer chains of sums than the outputs.
SCAN_PARITY_TOLERANCE = {"forward": 1e-3, "gradients": 5e-3}


def scan_parity(kernel=None, device: str = "cuda", length: int = 512, seed: int = 0) -> dict:
    """How far the fused selective scan (mamba-ssm's, or ``kernel`` in its calling convention) is
    from this module's PyTorch scan on the same random inputs, forward and in the gradients of every
    input. Returns the worst relative error of each, the tolerances and ``equal``.

    The inputs are a Mamba block's: d_inner 192 (TP-Mamba's adapter at r = 96), state 16, positive
    deltas through bias + softplus, A < 0 as mamba-ssm initialises it.
    """
    kernel = kernel or _cuda_selective_scan
    if kernel is None:
        raise RuntimeError("mamba-ssm's fused selective scan is not importable")
    generator = torch.Generator().manual_seed(seed)
    batch, d_inner, d_state = 2, 192, 16

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale).to(device).requires_grad_()

    u, delta_raw, z = rand(batch, length, d_inner), rand(batch, length, d_inner, scale=0.5), rand(batch, length, d_inner)
    B, C = rand(batch, length, d_state), rand(batch, length, d_state)
    A = (-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)).to(device).requires_grad_()
    D, delta_bias = rand(d_inner), rand(d_inner, scale=0.5)
    inputs = (u, delta_raw, A, B, C, D, z, delta_bias)
    upstream = torch.randn(batch, length, d_inner, generator=generator).to(device)

    def outputs_and_gradients(scan):
        y = scan()
        grads = torch.autograd.grad(y, inputs, upstream, allow_unused=True, materialize_grads=True)  # unused: zeros
        return y.detach(), grads

    fused, fused_grads = outputs_and_gradients(lambda: fused_selective_scan(kernel, *inputs))
    ours, our_grads = outputs_and_gradients(lambda: selective_scan(u, F.softplus(delta_raw + delta_bias), A, B, C, D, z))

    def relative(a, b):
        error = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
        return error if math.isfinite(error) else math.inf  # a NaN must not read as "no difference"

    forward = relative(fused, ours)
    gradients = max(relative(a, b) for a, b in zip(fused_grads, our_grads, strict=True))
    return {
        "forward_error": forward,
        "gradient_error": gradients,
        "tolerance": dict(SCAN_PARITY_TOLERANCE),
        "equal": forward <= SCAN_PARITY_TOLERANCE["forward"] and gradients <= SCAN_PARITY_TOLERANCE["gradients"],
    }


class Mamba(nn.Module):
    """Mamba block: (B, L, d_model) -> (B, L, d_model).

    Args:
        d_model: token width.
        d_state: SSM state size N per channel.
        d_conv: causal depthwise convolution width.
        expand: d_inner = expand * d_model.
        chunk_size: sequence chunk of the PyTorch scan (memory/speed only); None sizes it by memory.

    Example:
        >>> m = Mamba(96)
        >>> m(torch.randn(2, 36, 96)).shape
        torch.Size([2, 36, 96])
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        chunk_size: int | None = None,
    ):
        super().__init__()
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand < 1:
            raise ValueError(f"Mamba sizes must be positive, got d_model={d_model} d_state={d_state} d_conv={d_conv} expand={expand}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

        # mamba-ssm's initialisation: dt spread log-uniformly over [dt_min, dt_max] through the
        # bias (inverse softplus), A_n = -n (S4D-real), D = 1.
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        # mamba-ssm exempts the state matrix and the skip from weight decay (decay would pull A
        # towards -1 and D towards 0); the harness's optimiser honours this mark on any parameter.
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length]).transpose(1, 2)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())
        if hidden.is_cuda and _cuda_selective_scan is not None:
            delta_raw = dt @ self.dt_proj.weight.t()
            y = fused_selective_scan(_cuda_selective_scan, x, delta_raw, A, B, C, self.D.float(), z, self.dt_proj.bias.float())
        else:
            # The recurrence multiplies hundreds of factors: keep it in fp32 even under autocast.
            dtype = torch.promote_types(hidden.dtype, torch.float32)
            with torch.autocast(hidden.device.type, enabled=False):
                x, dt, B, C, z = (t.to(dtype) for t in (x, dt, B, C, z))
                delta = F.softplus(F.linear(dt, self.dt_proj.weight.to(dtype), self.dt_proj.bias.to(dtype)))
                if torch.jit.is_tracing():
                    y = selective_scan_op(x, delta, A.to(dtype), B, C, self.D.to(dtype), z)
                else:
                    y = selective_scan(x, delta, A.to(dtype), B, C, self.D.to(dtype), z, self.chunk_size)
        return self.out_proj(y.to(hidden.dtype))
