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
from typing import Optional

import torch

BACKENDS = ('reference', 'sdpa', 'triton')
ATTN_IMPLS = ('auto', ) + BACKENDS
# Earlier name of the sdpa backend (configs and scripts may still say it).
ALIASES = {'fast': 'sdpa'}


def normalize_impl(impl: str) -> str:
    impl = ALIASES.get(impl, impl)
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


def tracing() -> bool:
    """A graph is being recorded (``torch.jit.trace``, ``torch.export``, ONNX export):
    Python decisions on sizes would be taken once, for the example input."""
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_exporting())


def choose_backend(impl: str, device: torch.device, kv_downsample_mode: str,
                   soft_routing: bool, grad: bool = False) -> str:
    """The backend that runs ``attn_impl=impl`` on ``device`` with these options;
    ``grad``: gradients are being recorded (training)."""
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
    return 'sdpa' if reason or grad else 'triton'
