"""Backends of BRA's token attention over routed regions, and the one place that
chooses among them (as NATTEN chooses a backend per call).

* ``reference``: plain PyTorch, the specification (``ops/bra.py``);
* ``sdpa``: routed K/V gathered, PyTorch's fused attention (``sdpa.py``);
* ``triton``: fused kernels reading q/k/v from the NHWC projection (``triton/``).

``auto`` picks, on CUDA, ``triton`` for forward-only passes (inference) where the options
allow it and ``sdpa`` when gradients are recorded (training); ``reference`` on other
devices and while tracing or exporting (a traced graph must not contain Triton
launches). Training stays on ``sdpa`` because it was the faster of the two in training
steps, which are bound by host-side launch overhead that the Triton path (custom-op
dispatch, three kernel launches and the inverse routing lists per backward) adds to;
inference is faster with ``triton``, and ``triton`` takes the least memory in training
too: ask for ``attn_impl='triton'`` when memory is short (figures:
``docs/benchmark.md``, run 3).
"""
import contextlib
from typing import Optional, Tuple

import torch

BACKENDS = ('reference', 'sdpa', 'triton')
ATTN_IMPLS = ('auto', ) + BACKENDS


def normalize_impl(impl: str) -> str:
    if impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
    return impl


def triton_unsupported(device: torch.device, kv_downsample_mode: str,
                       soft_routing: bool) -> Optional[str]:
    """Why the Triton backend cannot run these options on ``device`` (None: it can)."""
    if kv_downsample_mode != 'identity':
        return (f"kv_downsample_mode={kv_downsample_mode!r} (the kernels read K/V at "
                f"full resolution; use 'identity')")
    if soft_routing:
        return 'soft_routing=True (the kernels do not scale K/V per routed region)'
    from .triton import unavailable_reason
    return unavailable_reason(device)


def autocast_dtype(device_type: str = 'cuda') -> Optional[torch.dtype]:
    """The autocast dtype in effect for ``device_type`` (None: autocast off)."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def tracing() -> bool:
    """A graph is being recorded (``torch.jit.trace``, ``torch.export``, ONNX export):
    Python decisions on sizes would be taken once, for the example input."""
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_exporting())


# Training in a captured step under ``auto``: the Triton kernels where regions hold at
# least this many tokens, or where their dense form applies (``triton.use_dense``);
# sdpa's masked dense attention elsewhere (docs/benchmark.md, run 5: at 224, stage 2's
# 16-token regions took 2.4 ms of GPU time in Triton against 12.8 ms masked dense; the
# routed kernels' dK/dV pass is slow on 4-token regions, which the dense kernels avoid:
# run 7).
TRITON_TRAIN_MIN_TOKENS = 16
_captured = False


@contextlib.contextmanager
def captured_step():
    """Code inside runs to be captured in a CUDA graph (enter it for the warm-up runs
    too, so that kernels are compiled before the capture): the host's cost per launch
    is then paid once, and the kernels that take the least GPU time are chosen where
    eager training would pick those that take the least host time: the Triton BRA
    kernels for training (regions of at least ``TRITON_TRAIN_MIN_TOKENS`` tokens, or
    small maps that the dense kernels take) and
    the fused LayerNorm at every size (``ops/layer_norm.py``)."""
    global _captured
    before, _captured = _captured, True
    try:
        yield
    finally:
        _captured = before


def in_captured_step() -> bool:
    """Inside :func:`captured_step`."""
    return _captured


def forward_only(*tensors: Optional[torch.Tensor]) -> bool:
    """No autograd graph will be recorded for an op on ``tensors`` (inference, frozen
    layers), nor a compiled or traced one: a custom op may then call its implementation
    directly, without the ``torch.library`` dispatch (tens of microseconds of host time
    per call, which eager inference pays at every block)."""
    if tracing() or torch.compiler.is_compiling():
        return False
    return not torch.is_grad_enabled() or not any(
        t is not None and t.requires_grad for t in tensors)


def _triton_trains(H: int, W: int, region_tokens: int, topk: int) -> bool:
    from .triton import use_dense
    return region_tokens >= TRITON_TRAIN_MIN_TOKENS or use_dense(H, W, region_tokens, topk)


def choose_backend(impl: str, device: torch.device, kv_downsample_mode: str,
                   soft_routing: bool, grad: bool = False,
                   geometry: Optional[Tuple[int, int, int, int]] = None) -> str:
    """The backend that runs ``attn_impl=impl`` on ``device`` with these options;
    ``grad``: gradients are being recorded (training); ``geometry``: the padded map's
    height and width, tokens per region and top-k, if known."""
    if impl in ('reference', 'sdpa'):
        return impl
    reason = triton_unsupported(device, kv_downsample_mode, soft_routing)
    if impl == 'triton':
        if reason:
            raise ValueError(f"attn_impl='triton' cannot run with {reason}; use "
                             f"attn_impl='auto' to fall back to another backend")
        return 'triton'
    if device.type != 'cuda' or tracing():
        return 'reference'
    if reason:
        return 'sdpa'
    # Eager training stays on sdpa: there the Triton path costs more host time (custom
    # op dispatch, inverse routing lists, launches) than it saves on the GPU.
    if grad and not (_captured and geometry is not None and _triton_trains(*geometry)):
        return 'sdpa'
    return 'triton'
