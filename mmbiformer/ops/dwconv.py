"""Depthwise convolution that does not stall on input shapes it has not seen.

cuDNN sets up a plan for every new input shape, on the CPU: for BiFormer's depthwise
convolutions in fp16 on an H100 that took 100-200 ms per layer's backward
(``docs/scripts/profile_train.py`` on Mask R-CNN), against microseconds of GPU work.
Detection and segmentation meet a new padded image shape at many iterations, and
BiFormer-S has 60 such layers, so training spent seconds per iteration planning and
under DDP every rank waited for whichever met a new shape. PyTorch's own CUDA
depthwise kernels need no plan (same speed at detection sizes, 1.4-2x slower on
classification batches, where the shape never changes): ``impl='native'`` runs them
forward and backward, ``impl='cudnn'`` keeps nn.Conv2d's choice.

The stem and down-sampling convs (3x3, stride 2) meet the same per-shape set-up in
cuDNN, about 36 ms per new input size for BiFormer-S's five
(``docs/scripts/new_size_probe.py``). :class:`GemmConv2d` runs them, under
``impl='native'``, as im2col (``F.unfold``) and one matrix product: no plan, a few
hundred microseconds more per step.
"""
import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ('native', 'cudnn')


class _NativeDepthwiseConv(torch.autograd.Function):
    """Stride-1 depthwise conv with cuDNN off in forward and backward (the backward
    picks its kernel again, so turning cuDNN off around the forward alone would not
    do)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        with _cudnn_off():
            return F.conv2d(x, weight, bias, 1, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        with _cudnn_off():
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad.contiguous(), x, weight, [weight.shape[0]] if ctx.has_bias else None,
                [1, 1], list(ctx.padding), [1, 1], False, [0, 0], x.shape[1],
                [need_x, need_w, ctx.has_bias and need_b])
        return gx, gw, gb, None


class _cudnn_off:
    # torch.backends.cudnn.flags() would also reset benchmark/deterministic/tf32.
    def __enter__(self):
        self.was = torch.backends.cudnn.enabled
        torch.backends.cudnn.enabled = False

    def __exit__(self, *exc):
        torch.backends.cudnn.enabled = self.was


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"dwconv_impl must be 'native' (PyTorch's CUDA kernels: no "
                         f"set-up per new input shape) or 'cudnn' (fastest once a shape "
                         f"is known: fixed-size classification), got {impl!r}")
    return impl


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels)``: same
    parameters and state-dict keys. ``impl='native'``: on CUDA, PyTorch's depthwise
    kernels instead of cuDNN (see the module doc); CPU and ``torch.compile`` are
    unaffected."""

    def __init__(self, channels: int, kernel_size: int, impl: str = 'native'):
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2,
                         groups=channels)
        self.impl = check_impl(impl)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, impl={self.impl!r}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == 'cudnn' or not x.is_cuda or torch.compiler.is_compiling():
            return super().forward(x)
        dtype = torch.get_autocast_dtype('cuda') if torch.is_autocast_enabled('cuda') else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast('cuda', enabled=False):
            return _NativeDepthwiseConv.apply(x.to(dtype), self.weight.to(dtype), bias,
                                              self.padding)


def conv2d_as_gemm(x: torch.Tensor, weight: torch.Tensor, bias, stride, padding):
    """``F.conv2d`` (groups 1, dilation 1) as im2col and a matrix product."""
    N, _, H, W = x.shape
    out_ch, _, kh, kw = weight.shape
    ho = (H + 2 * padding[0] - kh) // stride[0] + 1
    wo = (W + 2 * padding[1] - kw) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # N, C*kh*kw, L
    out = weight.reshape(out_ch, -1) @ cols
    if bias is not None:
        out = out + bias.view(1, out_ch, 1)
    return out.view(N, out_ch, ho, wo)


class GemmConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and keys) that, with ``impl='native'`` on CUDA,
    runs as :func:`conv2d_as_gemm`: no cuDNN set-up for new input shapes."""

    def __init__(self, *args, impl: str = 'native', **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != 'zeros':
            raise ValueError('GemmConv2d: groups 1, dilation 1 and zero padding only')
        self.impl = check_impl(impl)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, impl={self.impl!r}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == 'cudnn' or not x.is_cuda or torch.compiler.is_compiling():
            return super().forward(x)
        return conv2d_as_gemm(x, self.weight, self.bias, self.stride, self.padding)


def set_impl(module: nn.Module, impl: str) -> None:
    """Set ``impl`` of every :class:`DepthwiseConv2d` and :class:`GemmConv2d` inside
    ``module``."""
    check_impl(impl)
    for m in module.modules():
        if isinstance(m, (DepthwiseConv2d, GemmConv2d)):
            m.impl = impl
