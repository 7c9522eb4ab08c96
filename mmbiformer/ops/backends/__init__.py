"""Backends of BRA's token attention over routed regions, each with one signature,
``attention(qkv, routing, lce, spec)`` (``spec.py``; :func:`attention_of` by name):

* ``reference``: plain PyTorch, the specification (``reference.py``);
* ``sdpa``: routed K/V gathered, PyTorch's fused attention (``sdpa.py``);
* ``triton``: fused kernels reading q/k/v from the NHWC projection (``triton/``).

Which one ``attn_impl='auto'`` runs is decided with the other ops' kernels in
:mod:`mmbiformer.ops.backends.choose` (:func:`~.choose.choose_backend`, from the policy
of :mod:`mmbiformer.ops.policy`): on CUDA
``triton`` for forward-only passes, ``sdpa`` for eager training (host-bound: the Triton
path's custom-op dispatch, launches and inverse routing lists per backward cost more
host time than they save), ``triton`` in captured training steps where regions are
large enough; ``reference`` on other devices and while tracing or exporting (a traced
graph must not contain Triton launches). ``triton`` takes the least memory in training
too: ask for ``attn_impl='triton'`` when memory is short.
"""
from typing import Callable

from .choose import ATTN_IMPLS, BACKENDS  # noqa: F401  (the package's names)
from .spec import AttentionSpec  # noqa: F401


def attention_of(backend: str) -> Callable:
    """Backend ``backend``'s ``attention(qkv, routing, lce, spec)`` (one signature for
    all: ``spec.py``). Triton's package is imported only when asked for."""
    if backend == 'reference':
        from .reference import attention
    elif backend == 'sdpa':
        from .sdpa import attention
    elif backend == 'triton':
        from .triton import attention
    else:
        raise ValueError(f"backend must be 'reference', 'sdpa' or 'triton', got {backend!r}")
    return attention


def normalize_impl(impl: str) -> str:
    if impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
    return impl

