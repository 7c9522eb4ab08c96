"""mmbiformer: BiFormer (Bi-Level Routing Attention) for OpenMMLab.

``import mmbiformer`` and ``import mmbiformer.ops`` need only PyTorch and change nothing
outside the package, so BRA can be used in any PyTorch model. What OpenMMLab needs, its
registrations and the stack fixes of :mod:`mmbiformer.compat`, is
:mod:`mmbiformer.openmmlab`: the configs name it in ``custom_imports`` and the tools
import it first. A config written for earlier versions names plain ``'mmbiformer'``;
mmengine is then already loaded, and so the package loads ``mmbiformer.openmmlab`` too.
Imported before a toolbox, the package registers its modules as soon as that toolbox's
registry module (``mmdet.registry``, ``mmseg.registry``, ``mmpretrain.registry``) has
loaded, so the import order does not matter. :func:`register_all_modules` registers
them at any time (``mmengine.registry`` alone, for example).
"""
import sys

from .toolbox_hooks import TOOLBOX_REGISTRIES, after_toolbox

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__', 'register_all_modules']


def register_all_modules() -> None:
    """Register mmbiformer's modules (backbone, plug-ins, hooks, runner, ...) in the
    OpenMMLab registries, as ``mmdet.utils.register_all_modules()`` does for mmdet: call
    it before building from a registry in your own code (``MODELS.build(dict(
    type='BiFormer'))``). Configs do it with ``custom_imports``; the tools do it
    themselves. Calling it again does nothing."""
    from . import openmmlab  # noqa: F401


if 'mmengine' in sys.modules:  # inside OpenMMLab (a config's custom_imports)
    from . import openmmlab  # noqa: F401
else:
    for _registry in TOOLBOX_REGISTRIES:
        after_toolbox(_registry, register_all_modules)


def __getattr__(name: str):
    # The two public classes on first use: the backbone needs OpenMMLab, the op does not.
    if name == 'BiFormer':
        from .models import BiFormer
        return BiFormer
    if name == 'BiLevelRoutingAttention':
        from .ops import BiLevelRoutingAttention
        return BiLevelRoutingAttention
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
