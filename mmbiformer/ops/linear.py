"""``nn.Linear`` whose bias gradient is a matrix-vector product in captured steps; and
the MLP's GELU + second layer with GELU recomputed in the backward (less memory).

Autograd sums a linear layer's output gradient over its rows for the bias gradient with
a reduction kernel that reaches a fraction of the memory bandwidth on BiFormer's narrow
layers (64-384 output channels over 10^5 rows); cuBLAS's matrix-vector product with a
ones vector reads the same gradient several times faster (docs/benchmark_history.md, run 7).
The custom autograd function costs host time per call, so it is used only where that
is paid once: in captured steps (the runtime policy, :mod:`mmbiformer.ops.policy`).
Parameters and key names are ``nn.Linear``'s.

:class:`GeluLinear` is ``Linear(GELU(a))`` as one op. Autograd keeps the MLP's hidden
map twice: GELU's input for GELU's backward and GELU's output for the layer's weight
gradient; with ``recompute=True`` the op keeps only the input and computes GELU again
in its backward (one elementwise pass), which saves a sizeable share of BiFormer-S's
activation memory (``docs/benchmark_history.md``, run 8).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .policy import autocast_dtype, linear_bias_grad_as_mv, tracing


def column_sums(rows: torch.Tensor) -> torch.Tensor:
    """``rows.sum(0)`` of a 2-D tensor, as cuBLAS's matrix-vector product with a
    vector of ones (see the module's docstring for why), in ``rows``' dtype."""
    ones = torch.ones(rows.shape[0], dtype=rows.dtype, device=rows.device)
    return torch.mv(rows.t(), ones)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype autocast computes a product of ``t`` in (``t``'s own without autocast)."""
    return autocast_dtype(t.device.type) or t.dtype


def _linear_grads(needs, grad, xc, wc, x_dtype, w_dtype, b_dtype):
    """Autograd's gradients of ``F.linear(xc, wc, b)`` (``needs``: the context's
    ``needs_input_grad``), the bias one as ``g^T @ ones``; each in its input's dtype."""
    grad = grad.to(wc.dtype)
    g2 = grad.reshape(-1, grad.shape[-1])
    grad_x = grad_w = grad_b = None
    if needs[0]:
        grad_x = (grad @ wc).to(x_dtype)
    if needs[1]:
        grad_w = (g2.t() @ xc.reshape(-1, xc.shape[-1])).to(w_dtype)
    if needs[2]:
        grad_b = column_sums(g2).to(b_dtype)
    return grad_x, grad_w, grad_b


class _LinearMvBias(torch.autograd.Function):
    """``F.linear`` under the caller's autocast state; backward as autograd's, with the
    bias gradient as ``g^T @ ones``."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        dtype = _compute_dtype(x)
        xc, wc = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(xc, wc)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        return F.linear(xc, wc, bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        xc, wc = ctx.saved_tensors
        return _linear_grads(ctx.needs_input_grad, grad, xc, wc, *ctx.dtypes)


class Linear(nn.Linear):
    """``nn.Linear``; in a captured training step its bias gradient is computed as a
    matrix-vector product (see the module's docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if linear_bias_grad_as_mv(self.bias is not None):
            return _LinearMvBias.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class _GeluLinear(torch.autograd.Function):
    """``F.linear(F.gelu(a))`` under the caller's autocast state, keeping ``a`` (not
    GELU's output) for the backward, which recomputes GELU: autograd's numbers (GELU
    runs in ``a``'s dtype, as autocast leaves it, and its output is cast for the
    product, so the recomputation matches)."""

    @staticmethod
    def forward(ctx, a, weight, bias):
        dtype = _compute_dtype(a)
        wc = weight.to(dtype)
        ctx.save_for_backward(a, wc)
        ctx.dtypes = (weight.dtype, bias.dtype)
        return F.linear(F.gelu(a).to(dtype), wc, bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        a, wc = ctx.saved_tensors
        needs = ctx.needs_input_grad
        h = F.gelu(a).to(wc.dtype) if needs[1] else None  # the recomputation
        grad_h, grad_w, grad_b = _linear_grads(needs, grad, h, wc, a.dtype, *ctx.dtypes)
        grad_a = None if grad_h is None else torch.ops.aten.gelu_backward(grad_h, a)
        return grad_a, grad_w, grad_b


class GeluLinear(Linear):
    """``Linear(GELU(a))``; with ``recompute=True`` training recomputes GELU in the
    backward instead of keeping its output (see the module's docstring). Parameters
    and key names are ``nn.Linear``'s."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 recompute: bool = False, **kwargs):
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.recompute = recompute

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if (self.recompute and self.bias is not None and torch.is_grad_enabled()
                and not tracing()):
            return _GeluLinear.apply(a, self.weight, self.bias)
        return super().forward(F.gelu(a))

    def extra_repr(self) -> str:
        return f'GELU, then {super().extra_repr()}, recompute={self.recompute}'
