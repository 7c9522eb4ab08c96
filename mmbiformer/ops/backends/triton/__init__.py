"""Triton backend of BRA: fused routed attention (kernels.py) and its torch ops.

Importing this package needs Triton; ``mmbiformer.ops.bra`` imports it only when the
Triton backend is chosen, and :func:`unavailable_reason` says why it cannot be.
"""
import logging
import os
from typing import Dict, Optional, Tuple

import torch


def interpreting() -> bool:
    """Triton's CPU interpreter is on (``TRITON_INTERPRET=1``, read at import)."""
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


# Asked on every BRA call by the chooser, also inside ``torch.compile`` (which would
# trace through a cache wrapper): answered once, when the chooser first imports this
# package. An import, not a search for the package: a Triton that fails to import
# counts as absent, and the ops fall back to PyTorch's kernels.
try:
    import triton
    _TRITON_INSTALLED = True
except ImportError:
    _TRITON_INSTALLED = False


def triton_installed() -> bool:
    return _TRITON_INSTALLED


# What the kernels are checked with: the Triton releases (major, minor) of the tests and
# the GPU runs, and the oldest compute capability CI compiles them for
# (tests/triton_arch_limits.py). Elsewhere the ops take PyTorch's kernels, saying so once,
# unless MMBIFORMER_TRITON_UNCHECKED=1 (the user's own risk: nothing has checked them).
TRITON_VERSIONS = ((3, 6), (3, 6))
MIN_CAPABILITY = (7, 0)
UNCHECKED_ENV = 'MMBIFORMER_TRITON_UNCHECKED'
# Asked on every op call: one answer per device index, said once when it is a reason.
_cuda_reasons: Dict[int, Optional[str]] = {}


def unavailable_reason(device: torch.device) -> Optional[str]:
    """Why the Triton kernels cannot run on ``device``, or None if they can."""
    if not triton_installed():
        return 'Triton is not installed (pip install triton)'
    if device.type == 'cpu' and interpreting():
        return None
    if device.type != 'cuda':
        return (f'the Triton kernels run on CUDA devices (or on the CPU under '
                f'TRITON_INTERPRET=1), not on {device.type}')
    if not torch.cuda.is_available():  # no CUDA tensor to launch on (tests' stand-ins)
        return None
    return cuda_reason(torch.cuda.current_device() if device.index is None else device.index)


# Answered at trace time inside ``torch.compile`` (the device does not change).
@torch.compiler.assume_constant_result
def cuda_reason(index: int) -> Optional[str]:
    """Why the Triton kernels cannot run on CUDA device ``index`` (None: they can)."""
    if index not in _cuda_reasons:
        _cuda_reasons[index] = _cuda_reason(index)
    return _cuda_reasons[index]


def _version(text: str) -> Tuple[int, int]:
    major, minor = text.split('+')[0].split('.')[:2]
    return int(major), int(minor)


def _cuda_reason(index: int) -> Optional[str]:
    if os.environ.get(UNCHECKED_ENV, '0') not in ('', '0'):
        return None
    reason = None
    version = _version(triton.__version__)
    capability = torch.cuda.get_device_capability(index)
    low, high = TRITON_VERSIONS
    if not low <= version <= high:
        reason = (f'Triton {triton.__version__} is outside the releases the kernels are '
                  f'checked with ({low[0]}.{low[1]} to {high[0]}.{high[1]}.x)')
    elif capability < MIN_CAPABILITY:
        reason = (f'compute capability {capability[0]}.{capability[1]} is below '
                  f'{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}, the oldest the kernels are '
                  f'compiled and checked for')
    if reason:
        from mmengine.logging import print_log
        print_log(f'mmbiformer: Triton kernels off on cuda:{index} '
                  f'({torch.cuda.get_device_name(index)}): {reason}. BRA, LayerNorm and '
                  f'the depthwise convs run PyTorch\'s kernels instead (slower, same '
                  f'results); {UNCHECKED_ENV}=1 runs the Triton kernels anyway.',
                  logger='current', level=logging.WARNING)
    return reason


def attention(qkv: torch.Tensor, routing, lce, spec) -> torch.Tensor:
    """The backends' signature (``backends/spec.py``): the fused kernels of
    ``routed_attention.py`` on the NHWC projection, the LCE inside. Hard routing and
    identity KV only (:func:`~mmbiformer.ops.backends.choose.can_run_triton`)."""
    if spec.soft_routing or not spec.identity_kv:
        raise ValueError('the triton backend runs hard routing with identity KV only')
    from .routed_attention import routed_attention
    weights = (None, None) if lce is None else (lce.weight, lce.bias)
    return routed_attention(qkv, routing.index, spec.n_win, spec.num_heads, spec.qk_dim,
                            spec.scale, *weights)


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
