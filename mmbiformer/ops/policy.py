"""Which kernel each of BiFormer's ops runs: one policy, asked by every op.

Most ops have a kernel that takes the least GPU time (Triton, custom autograd) and one
that takes the least host time (one PyTorch op). Which is better depends on how the op
is run:

* **captured**: inside a CUDA graph's capture (:func:`captured_step`; the warm-up runs
  before a capture enter it too, so that the same kernels are compiled). Launches are
  paid once, at the capture: the least GPU time everywhere.
* **eager, forward-only**: no autograd graph is recorded (inference, frozen layers;
  :func:`forward_only`). Custom ops are called without their ``torch.library``
  dispatch, so a Triton kernel costs one launch.
* **eager, training**: autograd records every op; a custom op or autograd function
  adds host time per call, and eager training steps are bound by host time.

========================================  =================  ==================  =================
op                                        captured           eager, forward-only eager, training
========================================  =================  ==================  =================
``Linear``: the bias gradient             matrix-vector      (no backward)       autograd's sum
                                          product (``linear_bias_grad_mv``)
the MLP ``fc2(GELU(fc1(x)))``             GELU inside        three ops           three ops
                                          ``fc2``'s Triton
                                          products
                                          (``gelu_mlp``)
``LayerNorm`` (and the residual add)      Triton             Triton on maps of at least
                                                             ``layer_norm_triton_min_elements``,
                                                             else PyTorch (both modes)
the weights autocast casts (and their     one multi-tensor   one cast per        one cast each
gradients back)                           copy each way      parameter           way per
                                          (``half_weight_                        parameter
                                          copies``)
a norm's output kept for the next Linear  computed again     (no backward)       kept
                                          in the backward
                                          (``norm_output_
                                          recompute``)
BRA's routing: region means and top-k     Triton, one        PyTorch's ``mean``  PyTorch's ``mean``
                                          launch each        and ``topk``        and ``topk``
``DepthwiseConv2d(impl='cudnn')``: the    matrix-vector      (no backward)       autograd's sum
bias gradient                             product
                                          (``conv_bias_grad_mv``)
``DepthwiseConv2d(impl='native')``        Triton             Triton, with the    PyTorch's
                                                             block's residual    depthwise kernels
                                                             add
BRA ``attn_impl='auto'``                  Triton where       Triton              sdpa
                                          regions hold at
                                          least
                                          ``bra_triton_train_min_tokens``
                                          tokens or the dense
                                          kernels apply, else
                                          sdpa
========================================  =================  ==================  =================

``impl='cudnn'`` / ``'triton'`` and ``attn_impl='reference'`` / ``'sdpa'`` /
``'triton'`` are taken as asked. Everything falls back to PyTorch ops on the CPU, while
tracing or exporting and without Triton; under ``torch.compile`` the LayerNorm and
``Linear``'s bias gradient are PyTorch's (inductor fuses them with their neighbours;
the matrix-vector product, which inductor rewrites as a slow elementwise kernel, lost
there) and the custom ops stay (each is one node). The figures behind the
thresholds are in ``docs/benchmark_history.md`` (runs 5, 7, 8 and 12).

The choices themselves are pure functions of the policy, beside the backends
(:mod:`mmbiformer.ops.backends.choose`). The policy in effect is held here, in one
place (:func:`current_policy`). Change it for a block of code with
:func:`runtime_policy`, for a whole run with :func:`set_runtime_policy` or, in a
config, with the ``RuntimePolicyHook``
(``mmbiformer/engine/runtime_policy_hook.py``).
"""
import contextlib
import dataclasses
from typing import Iterator, Optional, Tuple

import torch


@dataclasses.dataclass(frozen=True)
class RuntimePolicy:
    """The switches of the table above."""
    captured: bool = False
    # Captured training computes Linear's bias gradient as a matrix-vector product.
    linear_bias_grad_mv: bool = True
    # Captured training computes a cuDNN depthwise conv's bias gradient (the position
    # embedding's, impl='cudnn') as a matrix-vector product over its channels-last
    # output gradient, not autograd's column reduction, which reaches a fraction of the
    # bandwidth on these maps (timed: docs/benchmark_history.md, run 20).
    conv_bias_grad_mv: bool = True
    # Captured steps run the MLP with GELU inside the second layer's products (Triton;
    # two passes over the hidden map fewer each way, one hidden map less kept). Off:
    # its Triton products are slower than cuBLAS's and GELU's passes together; a
    # memory option (docs/train_test.md, "When GPU memory is short").
    gelu_mlp: bool = False
    # Captured training steps cast the weights autocast would cast one at a time (and
    # their gradients back) with one multi-tensor copy each way
    # (``engine/half_weights.py``). Off until timed on a GPU (the same gradients,
    # bit for bit, on the CPU).
    half_weight_copies: bool = False
    # Captured training keeps no copy of a block's norm outputs for the Linear that
    # reads them: the backward computes them again from the residual sums the norms
    # keep anyway (one elementwise pass a norm; ops/layer_norm.py). Off until timed
    # on a GPU (a memory option: the same gradients, bit for bit, on the CPU).
    norm_output_recompute: bool = False
    # Eager LayerNorm runs the Triton kernels from this many elements up (stages 1-2
    # of a 128-image classification batch): below it their host cost is larger than
    # the GPU time they save.
    layer_norm_triton_min_elements: int = 2**23
    # Captured training takes the Triton BRA kernels from this many tokens per region
    # up (their dK/dV pass is slow on smaller regions, which the dense kernels or
    # sdpa's masked dense attention take).
    bra_triton_train_min_tokens: int = 16

    def __post_init__(self):
        for name in ('layer_norm_triton_min_elements', 'bra_triton_train_min_tokens'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'runtime policy: {name} must be an int >= 0, got {value!r}')
        for name in ('captured', 'linear_bias_grad_mv', 'conv_bias_grad_mv', 'gelu_mlp',
                     'half_weight_copies', 'norm_output_recompute'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f'runtime policy: {name} must be a bool, got '
                                 f'{getattr(self, name)!r}')


_policy = RuntimePolicy()


def current_policy() -> RuntimePolicy:
    return _policy


def policy_with(**changes) -> RuntimePolicy:
    """The current policy with ``changes`` (checked: names and values), not set."""
    fields = {f.name for f in dataclasses.fields(RuntimePolicy)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f'runtime policy: unknown switches {unknown}; the switches are '
                         f'{sorted(fields)}')
    return dataclasses.replace(_policy, **changes)


def set_runtime_policy(**changes) -> RuntimePolicy:
    """Change the policy from now on (e.g. ``layer_norm_triton_min_elements=0``);
    returns the policy it replaced."""
    global _policy
    before, _policy = _policy, policy_with(**changes)
    return before


@contextlib.contextmanager
def runtime_policy(**changes) -> Iterator[RuntimePolicy]:
    """The policy with ``changes`` inside the block, the previous one after it."""
    global _policy
    before = set_runtime_policy(**changes)
    try:
        yield _policy
    finally:
        _policy = before


def captured_step():
    """Code inside runs to be captured in a CUDA graph (enter it for the warm-up runs
    too, so that kernels are compiled before the capture): ``runtime_policy(captured=True)``."""
    return runtime_policy(captured=True)


def in_captured_step() -> bool:
    """Inside :func:`captured_step`."""
    return _policy.captured


# -- what a call can use ---------------------------------------------------------------
def tracing() -> bool:
    """A graph is being recorded (``torch.jit.trace``, ``torch.export``, ONNX export):
    Python decisions on sizes would be taken once, for the example input."""
    # torch 2.11 answers is_exporting() True inside a plain torch.compile too, which
    # sent a compiled model down the export paths (no Triton kernels): count the
    # exports that run the model's Python outside dynamo (torch.export's default,
    # non-strict).
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or (_exporting() and not torch.compiler.is_dynamo_compiling()))


def _exporting() -> bool:
    # A seam for the tests: dynamo answers torch.compiler.is_exporting itself, so a
    # test cannot replace it to play torch 2.11 inside a compiled function.
    return torch.compiler.is_exporting()


def autocast_dtype(device_type: str = 'cuda') -> Optional[torch.dtype]:
    """The autocast dtype in effect for ``device_type`` (None: autocast off)."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def forward_only(*tensors: Optional[torch.Tensor]) -> bool:
    """No autograd graph will be recorded for an op on ``tensors`` (inference, frozen
    layers), nor a compiled or traced one: a custom op may then call its implementation
    directly, without the ``torch.library`` dispatch (tens of microseconds of host time
    per call, which eager inference pays at every block)."""
    if tracing() or torch.compiler.is_compiling():
        return False
    return not torch.is_grad_enabled() or not any(
        t is not None and t.requires_grad for t in tensors)


# -- the choices of the table -------------------------------------------------------------
def conv_bias_grad_as_mv(x: torch.Tensor, has_bias: bool) -> bool:
    """``DepthwiseConv2d(impl='cudnn')`` on ``x``: its bias added by an op whose
    backward is a matrix-vector product (``ops/dwconv.py``), not inside the conv."""
    return (has_bias and x.is_cuda and _policy.captured and _policy.conv_bias_grad_mv
            and torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and not tracing())


def linear_bias_grad_as_mv(has_bias: bool) -> bool:
    """``Linear``: its bias gradient as a matrix-vector product (a custom autograd
    function), not autograd's reduction."""
    return (has_bias and _policy.captured and _policy.linear_bias_grad_mv
            and torch.is_grad_enabled() and not torch.compiler.is_compiling())
