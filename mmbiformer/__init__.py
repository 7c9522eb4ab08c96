"""mmbiformer: BiFormer (Bi-Level Routing Attention) for OpenMMLab.

``import mmbiformer`` and ``import mmbiformer.ops`` need only PyTorch and change nothing
outside the package, so BRA can be used in any PyTorch model. What OpenMMLab needs, its
registrations and the stack fixes of :mod:`mmbiformer.compat`, is
:mod:`mmbiformer.openmmlab`: the configs name it in ``custom_imports`` and the tools
import it first. A config written for earlier versions names plain ``'mmbiformer'``;
mmengine is then already loaded, and so the package loads ``mmbiformer.openmmlab`` too.
In your own code, :func:`register_all_modules` registers them whatever was imported
first.
"""
import sys

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__', 'register_all_modules']

if 'mmengine' in sys.modules:  # inside OpenMMLab (a config's custom_imports)
    from . import openmmlab  # noqa: F401


def register_all_modules() -> None:
    """Register mmbiformer's modules (backbone, plug-ins, hooks, runner, ...) in the
    OpenMMLab registries, as ``mmdet.utils.register_all_modules()`` does for mmdet: call
    it before building from a registry in your own code (``MODELS.build(dict(
    type='BiFormer'))``). Configs do it with ``custom_imports``; the tools do it
    themselves. Calling it again does nothing."""
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
