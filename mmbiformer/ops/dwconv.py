"""Convolutions that do not stall on input shapes they have not seen.

cuDNN sets up a plan for every new input shape, on the host. Detection and
segmentation meet a new padded image shape at many iterations, so with cuDNN the
backbone's depthwise convs (position embedding, LCE: 60 layers in BiFormer-S) spent
far more time planning than computing, and under DDP every rank waited for whichever
met a new shape. Two layer types avoid the plans and keep ``nn.Conv2d``'s parameters
and state-dict keys:

* :class:`DepthwiseConv2d`: ``impl='native'`` runs PyTorch's own CUDA depthwise
  kernels forward and backward (no plan; as fast at detection sizes, slower on fixed
  classification batches, which keep ``impl='cudnn'``);
* :class:`GemmConv2d` (stem and down-sampling convs): ``impl='native'`` runs them as
  im2col (``F.unfold``) and one matrix product.

BiFormer's stages are NHWC, and its blocks call :meth:`DepthwiseConv2d.forward_nhwc`:
with ``'cudnn'`` the NHWC map is handed to cuDNN as a channels-last view (no copy; the
fastest depthwise conv measured at a fixed size), with ``'native'`` PyTorch's kernels
take an NCHW copy. ``impl='triton'`` is ``'native'`` except there: the Triton kernels of
``backends/triton/dwconv.py`` (residual and bias in the same pass, V read in place, no
copy, no plan per shape), slower than cuDNN's channels-last kernels today
(``docs/benchmark_history.md``, run 4). Inside ``captured_step()`` (a CUDA graph's capture,
where launches cost nothing at replay) and in forward-only passes (inference, where no
autograd records the op, so its host cost is one launch) ``'native'`` takes the Triton
kernels too: they take less GPU time than PyTorch's (``docs/benchmark_history.md``, runs 8, 12).

Measured costs: ``docs/gpu_runs.md`` ("the cause, the fix") and ``docs/benchmark_history.md``
("Pipeline").
"""
import torch
import torch.nn.functional as F
from torch import nn

from .backends.choose import dwconv_runs_triton
from .linear import column_sums
from .policy import autocast_dtype, conv_bias_grad_as_mv, current_policy

IMPLS = ('native', 'cudnn', 'triton')


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
                         f"set-up per new input shape), 'cudnn' (fastest once a shape is "
                         f"known: fixed-size classification) or 'triton' (NHWC Triton "
                         f"kernels), got {impl!r}")
    return impl


class _PlanFreeConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` with an ``impl``: ``'cudnn'`` runs ``nn.Conv2d``, ``'native'``
    and ``'triton'`` run :meth:`native_forward` on CUDA inputs (CPU and
    ``torch.compile`` are left to ``nn.Conv2d``)."""

    def __init__(self, *args, impl: str = 'native', **kwargs):
        super().__init__(*args, **kwargs)
        self.impl = check_impl(impl)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, impl={self.impl!r}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == 'cudnn' or not x.is_cuda or torch.compiler.is_compiling():
            return super().forward(x)
        return self.native_forward(x)

    def native_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _with_strides_of(param: torch.Tensor):
    """A gradient hook that gives ``param``'s gradient ``param``'s strides where both
    lay out the same memory. A depthwise weight (C, 1, k, k) has one layout whatever the
    stride of its size-1 dimension, but convolutions of channels-last inputs return its
    gradient as (k*k, 1, k, 1) against the parameter's (k*k, k*k, k, 1), and DDP then
    warns "Grad strides do not match bucket view strides" at every run."""
    def hook(grad: torch.Tensor) -> torch.Tensor:
        if (grad.stride() == param.stride() or grad.shape != param.shape
                or not (grad.is_contiguous() and param.is_contiguous())):
            return grad
        return grad.as_strided(param.shape, param.stride(), grad.storage_offset())
    return hook


class _AddChannelBias(torch.autograd.Function):
    """``y + bias`` over the channels (dim 1) of an NCHW-shaped map, in ``y``'s dtype.
    The bias gradient of a channels-last map is a matrix-vector product over its
    (pixels, channels) view: cuBLAS reads the gradient once, where autograd's column
    reduction over N, H and W reaches a fraction of the bandwidth on these maps
    (the cuDNN conv's own bias gradient)."""

    @staticmethod
    def forward(ctx, y, bias):
        ctx.bias_dtype = bias.dtype
        return y + bias.to(y.dtype).view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad):
        C = grad.shape[1]
        if grad.is_contiguous(memory_format=torch.channels_last):
            db = column_sums(grad.permute(0, 2, 3, 1).reshape(-1, C))  # a view
        else:
            db = grad.sum((0, 2, 3))
        return grad, db.to(ctx.bias_dtype)


def add_channel_bias(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``y + bias[:, None, None]`` with the bias gradient of :class:`_AddChannelBias`."""
    with torch.autocast(y.device.type, enabled=False):
        return _AddChannelBias.apply(y, bias)


class DepthwiseConv2d(_PlanFreeConv2d):
    """``nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels)``: same
    parameters and state-dict keys. ``impl='native'``: on CUDA, PyTorch's depthwise
    kernels instead of cuDNN (see the module doc)."""

    def __init__(self, channels: int, kernel_size: int, impl: str = 'native'):
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2,
                         groups=channels, impl=impl)
        self.weight.register_hook(_with_strides_of(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == 'cudnn' and conv_bias_grad_as_mv(x, self.bias is not None):
            y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation,
                         self.groups)
            return add_channel_bias(y, self.bias)
        return super().forward(x)

    def forward_nhwc(self, x: torch.Tensor, residual: torch.Tensor = None,
                     add_input: bool = False) -> torch.Tensor:
        """``conv(x) [+ residual] [+ x]`` on an NHWC map, NHWC out. ``x`` may be a
        channel slice of a wider tensor. With ``impl='triton'`` on CUDA one Triton
        kernel (no layout copies); otherwise this module's NCHW forward."""
        if self.runs_triton(x):
            from .backends.triton.dwconv import dwconv_nhwc
            return dwconv_nhwc(x, self.weight, self.bias, residual, add_input)
        out = self(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if add_input:
            out = out + x
        return out if residual is None else out + residual

    def runs_triton(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward_nhwc` runs the Triton kernel on ``x`` (which adds the
        residual and ``x`` itself inside the convolution's own pass, not as other ops)."""
        return dwconv_runs_triton(self.impl, x, self.weight, current_policy())

    def native_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = autocast_dtype('cuda') or x.dtype
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


class GemmConv2d(_PlanFreeConv2d):
    """``nn.Conv2d`` (same parameters and keys) that, with ``impl='native'`` on CUDA,
    runs as :func:`conv2d_as_gemm`: no cuDNN set-up for new input shapes."""

    def __init__(self, *args, impl: str = 'native', **kwargs):
        super().__init__(*args, impl=impl, **kwargs)
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != 'zeros':
            raise ValueError('GemmConv2d: groups 1, dilation 1 and zero padding only')

    def native_forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_as_gemm(x, self.weight, self.bias, self.stride, self.padding)


def set_impl(module: nn.Module, impl: str) -> None:
    """Set ``impl`` of every :class:`DepthwiseConv2d` and :class:`GemmConv2d` inside
    ``module``."""
    check_impl(impl)
    for m in module.modules():
        if isinstance(m, _PlanFreeConv2d):
            m.impl = impl
