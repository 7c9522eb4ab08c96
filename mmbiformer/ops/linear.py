"""``nn.Linear`` whose bias gradient is a matrix-vector product in captured steps.

Autograd sums a linear layer's output gradient over its rows for the bias gradient with
a reduction kernel that reaches 0.3-1 TB/s on BiFormer's narrow layers (64-384 output
channels over 10^5 rows); cuBLAS's matrix-vector product with a ones vector reads the
same gradient 2-4x faster (docs/benchmark.md, run 7: 5.8 against 3.4 ms a step for
BiFormer-S at batch 128). The custom autograd function costs host time per call, so it
is used only where that is paid once: inside
:func:`~mmbiformer.ops.backends.captured_step`. Parameters and key names are
``nn.Linear``'s.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .backends import in_captured_step


def _ones(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(n, dtype=like.dtype, device=like.device)


class _LinearMvBias(torch.autograd.Function):
    """``F.linear`` under the caller's autocast state; backward as autograd's, with the
    bias gradient as ``g^T @ ones``."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        dtype = (torch.get_autocast_dtype(x.device.type)
                 if torch.is_autocast_enabled(x.device.type) else x.dtype)
        xc, wc = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(xc, wc)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        return F.linear(xc, wc, bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        xc, wc = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad = grad.to(wc.dtype)
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ wc).to(x_dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (g2.t() @ xc.reshape(-1, xc.shape[-1])).to(w_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = torch.mv(g2.t(), _ones(g2.shape[0], g2)).to(b_dtype)
        return grad_x, grad_w, grad_b


class Linear(nn.Linear):
    """``nn.Linear``; in a captured training step its bias gradient is computed as a
    matrix-vector product (see the module's docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None and in_captured_step() and torch.is_grad_enabled():
            return _LinearMvBias.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
