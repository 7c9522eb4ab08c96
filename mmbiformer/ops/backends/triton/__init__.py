"""Triton backend of BRA: fused routed attention (kernels.py) and its torch ops.

Importing this package needs Triton; ``mmbiformer.ops.bra`` imports it only when the
Triton backend is chosen, and :func:`unavailable_reason` says why it cannot be.
"""
import os
from typing import Optional

import torch


def interpreting() -> bool:
    """Triton's CPU interpreter is on (``TRITON_INTERPRET=1``, read at import)."""
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


# Asked on every BRA call by the chooser, also inside ``torch.compile`` (which would
# trace through a cache wrapper): answered once, when the chooser first imports this
# package. An import, not a search for the package: a Triton that fails to import
# counts as absent, and the ops fall back to PyTorch's kernels.
try:
    import triton  # noqa: F401
    _TRITON_INSTALLED = True
except ImportError:
    _TRITON_INSTALLED = False


def triton_installed() -> bool:
    return _TRITON_INSTALLED


def unavailable_reason(device: torch.device) -> Optional[str]:
    """Why the Triton kernels cannot run on ``device``, or None if they can."""
    if not triton_installed():
        return 'Triton is not installed (pip install triton)'
    if device.type == 'cuda' or (device.type == 'cpu' and interpreting()):
        return None
    return (f'the Triton kernels run on CUDA devices (or on the CPU under '
            f'TRITON_INTERPRET=1), not on {device.type}')


# Every dimension of a ``tl.dot`` tile is at least this: the routed kernels' query
# tiles (one region each) have at least this many rows.
MIN_TILE = 16
# Regions the dense kernels' routing masks hold (one int64 per query region).
DENSE_MAX_REGIONS = 64


def use_dense(H: int, W: int, L: int, topk: int) -> bool:
    """Whether the dense kernels (all tokens of the map, routing as a mask;
    ``dense_kernels.py``) compute fewer products than the routed ones: per query region
    those take ``max(16, L)`` query rows (one region per tile) against ``topk * L`` keys,
    the dense ones ``L`` rows against ``H * W`` keys. True at stage 3 of a 224 input
    (4-token regions, 196 tokens, top 16: 196 <= 256); false at stage 2 (784 > 64) and
    in detection's large maps."""
    return H * W <= max(MIN_TILE, L) * topk and H * W <= DENSE_MAX_REGIONS * L


def _patch_interpreter_scalars() -> None:
    """Triton 3.6's interpreter turns a scalar into ``int(array_of_one)``, which NumPy
    >= 2.4 refuses; loops with run-time bounds then fail on the CPU. Convert through
    ``.item()``. Only under ``TRITON_INTERPRET=1``; GPU code is untouched."""
    from triton.runtime import interpreter
    original = getattr(interpreter, '_patch_lang_tensor', None)
    if original is None or getattr(original, '_mmbiformer', False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, '__index__', lambda self: int(self.handle.data.item()))

    patched._mmbiformer = True
    interpreter._patch_lang_tensor = patched


if interpreting():
    try:
        _patch_interpreter_scalars()
    except ImportError:
        pass
