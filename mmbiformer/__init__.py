"""mmbiformer: BiFormer (Bi-Level Routing Attention) for OpenMMLab.

``import mmbiformer`` and ``import mmbiformer.ops`` need only PyTorch and change nothing
outside the package, so BRA can be used in any PyTorch model. What OpenMMLab needs, its
registrations and the stack fixes of :mod:`mmbiformer.compat`, is
:mod:`mmbiformer.openmmlab`: the configs name it in ``custom_imports`` and the tools
import it first. A config written for earlier versions names plain ``'mmbiformer'``;
mmengine is then already loaded, and so the package loads ``mmbiformer.openmmlab`` too.
"""
import sys

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__']

if 'mmengine' in sys.modules:  # inside OpenMMLab (a config's custom_imports)
    from . import openmmlab  # noqa: F401


def __getattr__(name: str):
    # The two public classes on first use: the backbone needs OpenMMLab, the op does not.
    if name == 'BiFormer':
        from .models import BiFormer
        return BiFormer
    if name == 'BiLevelRoutingAttention':
        from .ops import BiLevelRoutingAttention
        return BiLevelRoutingAttention
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
