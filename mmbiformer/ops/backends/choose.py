"""Which kernels BiFormer's ops run: pure functions of the runtime policy, passed in
(:class:`~mmbiformer.ops.policy.RuntimePolicy`; the table of choices is in
:mod:`mmbiformer.ops.policy`), and of what a call can use. Every choice of a backend is
here, beside the backends. ``reference`` and ``sdpa`` run every option on every
device; the one backend that may not, Triton, says why in :func:`can_run_triton`.

The ops ask with the policy in effect: ``choose_backend(..., policy=current_policy())``.
"""
from typing import Optional, Tuple

import torch

from ..policy import RuntimePolicy, autocast_dtype, forward_only, tracing

BACKENDS = ('reference', 'sdpa', 'triton')
ATTN_IMPLS = ('auto', ) + BACKENDS


def can_run_triton(device: torch.device, kv_downsample_mode: str = 'identity',
                   soft_routing: bool = False) -> Optional[str]:
    """Why the Triton kernels cannot run these options on ``device`` (None: they can)."""
    if kv_downsample_mode != 'identity':
        return (f"kv_downsample_mode={kv_downsample_mode!r} (the kernels read K/V at "
                f"full resolution; use 'identity')")
    if soft_routing:
        return 'soft_routing=True (the kernels do not scale K/V per routed region)'
    from .triton import unavailable_reason
    return unavailable_reason(device)


def choose_backend(impl: str, device: torch.device, kv_downsample_mode: str,
                   soft_routing: bool, grad: bool,
                   geometry: Optional[Tuple[int, int, int, int]],
                   policy: RuntimePolicy) -> str:
    """The backend that runs BRA's token attention with ``attn_impl=impl`` on ``device``
    with these options; ``grad``: gradients are being recorded (training);
    ``geometry``: the padded map's height and width, tokens per region and top-k, if
    known. ``'reference'`` and ``'sdpa'`` are taken as asked, ``'triton'`` where it can
    run (else an error naming the reason), ``'auto'`` as the policy's table says."""
    if impl in ('reference', 'sdpa'):
        return impl
    reason = can_run_triton(device, kv_downsample_mode, soft_routing)
    if impl == 'triton':
        if reason:
            raise ValueError(f"attn_impl='triton' cannot run with {reason}; use "
                             f"attn_impl='auto' to fall back to another backend")
        return 'triton'
    if device.type != 'cuda' or tracing():
        return 'reference'
    if reason:
        return 'sdpa'
    if grad and not (policy.captured and geometry is not None
                     and _triton_trains(policy, *geometry)):
        return 'sdpa'
    return 'triton'


def _triton_trains(policy: RuntimePolicy, H: int, W: int, region_tokens: int,
                   topk: int) -> bool:
    from .triton import use_dense
    return (region_tokens >= policy.bra_triton_train_min_tokens
            or use_dense(H, W, region_tokens, topk))


def _triton_can_take(x: torch.Tensor) -> bool:
    from .triton import unavailable_reason
    return x.is_cuda and not tracing() and unavailable_reason(x.device) is None


def layer_norm_runs_triton(x: torch.Tensor, policy: RuntimePolicy) -> bool:
    """``LayerNorm`` of ``x`` (affine, over the last dimension) by the Triton kernels,
    not PyTorch's (which ``torch.compile`` fuses: it keeps them)."""
    return (_triton_can_take(x) and not torch.compiler.is_compiling()
            and (policy.captured or x.numel() >= policy.layer_norm_triton_min_elements))


def dwconv_runs_triton(impl: str, x: torch.Tensor, weight: torch.Tensor,
                       policy: RuntimePolicy) -> bool:
    """``DepthwiseConv2d(impl)`` on the NHWC map ``x`` by the Triton kernel (one NHWC
    pass, residual adds in it; a custom op, which ``torch.compile`` keeps as one node),
    not by the module's NCHW forward (``impl``'s kernels)."""
    wanted = impl == 'triton' or impl == 'native' and (
        policy.captured or forward_only(x, weight))
    return wanted and _triton_can_take(x)


def routing_runs_triton(qkv: torch.Tensor, policy: RuntimePolicy) -> bool:
    """BRA's region means and top-k by ``backends/triton/routing.py`` (forward only, so
    not where the routing is differentiable): in captured steps, where a launch is paid
    once; eagerly, PyTorch's few ops cost less host time than launching Triton kernels
    from Python."""
    return (policy.captured and _triton_can_take(qkv) and not torch.compiler.is_compiling())


def mlp_runs_triton(x: torch.Tensor, policy: RuntimePolicy) -> bool:
    """The MLP ``fc2(GELU(fc1(x)))`` by ``backends/triton/mlp.py`` (GELU inside the
    second layer's products; half precision only), not as three ops: in captured
    steps, where its custom autograd function's host cost is paid once."""
    return (policy.captured and policy.gelu_mlp and _triton_can_take(x)
            and not torch.compiler.is_compiling()
            and (autocast_dtype(x.device.type) or x.dtype) in (torch.float16,
                                                                torch.bfloat16))


def norm_output_recomputes(policy: RuntimePolicy) -> bool:
    """A block's norm outputs computed again in the backward rather than kept
    (``LayerNorm.output_recomputed``): in captured steps, where the saved-tensor hooks'
    host cost is paid once."""
    return policy.captured and policy.norm_output_recompute and not tracing()
