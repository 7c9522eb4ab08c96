"""The weights autocast casts, cast all at once: one multi-tensor copy per step each way.

Under autocast every ``Linear`` and convolution casts its float32 weight and bias to the
autocast dtype as it runs, and autograd casts each of their gradients back: two small
kernels per parameter per step, each costing a launch however small it is (their share
of BiFormer-S's captured step: docs/benchmark_history.md, run 19). Here those parameters get
half-precision stand-ins (``stand_ins.py``) that the step's forward reads instead:
one ``_foreach_copy_`` casts every weight before the forward, autocast finds them
already in its dtype and casts nothing, and after the backward one ``_foreach_copy_``
casts their gradients into the float32 parameters' ``.grad``.

The numbers are autocast's: a parameter is replaced only if the model's forward uses it
exactly once, through autocast's cast (found by watching one forward's aten calls). A
parameter read in float32 by any op, cast twice (its gradients would then add up in
half precision) or with hooks of its own keeps autocast's path.
"""
import contextlib
from typing import Callable, List, Optional

import torch

from ..private_api import dispatch_watch, foreach_copy_, has_hooks
from .stand_ins import stand_ins

_CASTS = ('aten._to_copy.default', 'aten.to.dtype', 'aten.to.dtype_layout')


def autocast_cast_once(model: torch.nn.Module, forward: Callable[[], object],
                       dtype: torch.dtype) -> List[torch.Tensor]:
    """The trainable parameters of ``model`` that ``forward()`` (the model's forward
    under autocast to ``dtype``; run once here, its result dropped) reads only through
    one cast to ``dtype``, and that have no hooks."""
    params = [p for p in model.parameters()
              if p.requires_grad and p.dtype == torch.float32 and not has_hooks(p)]
    by_key = {p._cdata: p for p in params}
    casts = dict.fromkeys(by_key, 0)
    other = set()

    def seen(func, tensors, kwargs):
        cast = str(func) in _CASTS and kwargs.get('dtype') == dtype
        for t in tensors:
            key = t._cdata
            if key in by_key:
                if cast:
                    casts[key] += 1
                else:
                    other.add(key)

    with dispatch_watch(seen):
        forward()
    return [p for key, p in by_key.items() if casts[key] == 1 and key not in other]


class HalfWeights:
    """Half-precision stand-ins of ``params`` (from :func:`autocast_cast_once`).

    ``with half.swapped(model):`` casts every parameter into its stand-in (one
    multi-tensor copy) and puts the stand-ins in the modules' slots; run the forward
    and the backward inside. On leaving it restores the parameters and casts the
    stand-ins' gradients into the parameters' ``.grad`` (one copy)."""

    def __init__(self, params: List[torch.Tensor], dtype: torch.dtype):
        self.params = params
        self.halves = [torch.nn.Parameter(torch.empty_like(p, dtype=dtype)) for p in params]

    def cast(self) -> None:
        """The parameters' values into their stand-ins (one multi-tensor copy)."""
        with torch.no_grad():
            foreach_copy_(self.halves, self.params)

    def leaves(self, params: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """``stand_ins``' ``leaves`` for ``params``: the half-precision stand-in where
        there is one, else None (a leaf on the parameter's memory)."""
        half = {id(p): h for p, h in zip(self.params, self.halves)}
        return [half.get(id(p)) for p in params]

    @contextlib.contextmanager
    def swapped(self, model: torch.nn.Module):
        self.cast()
        for h in self.halves:
            h.grad = None  # the backward writes fresh gradients (no add into old ones)
        with stand_ins(model, self.params, self.halves):
            yield
        self._grads_to_params()

    def _grads_to_params(self) -> None:
        pairs = [(p, h.grad) for p, h in zip(self.params, self.halves) if h.grad is not None]
        if not pairs:
            return
        grads = [torch.empty_like(p) for p, _ in pairs]
        foreach_copy_(grads, [g for _, g in pairs])
        for (p, _), g in zip(pairs, grads):
            p.grad = g if p.grad is None else p.grad + g


def swapped_in(half: Optional[HalfWeights], model: torch.nn.Module):
    """``half.swapped(model)``, or nothing to do without ``half``."""
    return half.swapped(model) if half is not None else contextlib.nullcontext()


def half_weights_for(model: torch.nn.Module, forward: Callable[[], object],
                     dtype: Optional[torch.dtype]) -> Optional[HalfWeights]:
    """:class:`HalfWeights` for the parameters ``forward`` casts once to ``dtype``
    (None without autocast, off CUDA, or when there are none). The watched forward
    leaves no trace: the random generators and the model's buffers (BatchNorm's
    running statistics) are as they were before it."""
    if dtype not in (torch.float16, torch.bfloat16):
        return None
    device = next(model.parameters()).device
    if device.type != 'cuda':
        return None
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    with torch.random.fork_rng(devices=[device]):
        params = autocast_cast_once(model, forward, dtype)
    with torch.no_grad():
        for b, saved in buffers:
            b.copy_(saved)
    return HalfWeights(params, dtype) if params else None
