"""Backends of BRA's token attention over routed regions, and the one place that
chooses among them (as NATTEN chooses a backend per call).

* ``reference``: plain PyTorch, the specification (``ops/bra.py``);
* ``sdpa``: routed K/V gathered, PyTorch's fused attention (``sdpa.py``);
* ``triton``: fused kernels reading q/k/v from the NHWC projection (``triton/``).

``auto`` picks ``triton`` on CUDA where the options allow it, else ``sdpa`` on CUDA,
and ``reference`` on other devices and while tracing or exporting (a traced graph must
not contain Triton launches).
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


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def choose_backend(impl: str, device: torch.device, kv_downsample_mode: str,
                   soft_routing: bool) -> str:
    """The backend that runs ``attn_impl=impl`` on ``device`` with these options."""
    if impl in ('reference', 'sdpa'):
        return impl
    reason = triton_unsupported(device, kv_downsample_mode, soft_routing)
    if impl == 'triton':
        if reason:
            raise ValueError(f"attn_impl='triton' cannot run with {reason}; use "
                             f"attn_impl='auto' to fall back to another backend")
        return 'triton'
    if device.type != 'cuda' or _tracing():
        return 'reference'
    return 'sdpa' if reason else 'triton'
