"""Backends of BRA's token attention over routed regions:

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
from .choose import ATTN_IMPLS, BACKENDS  # noqa: F401  (the package's names)


def normalize_impl(impl: str) -> str:
    if impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
    return impl

