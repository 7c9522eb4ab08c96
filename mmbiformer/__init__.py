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
import importlib.abc
import importlib.machinery
import sys

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__', 'register_all_modules']

# The toolbox registries whose loading registers mmbiformer's modules.
TOOLBOX_REGISTRIES = ('mmdet.registry', 'mmseg.registry', 'mmpretrain.registry')


class _RegisterAfterToolbox(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a toolbox registry module, it wraps the real loader so
    that :func:`register_all_modules` runs once the module has loaded (the toolbox is
    initialised then; loading ``mmbiformer.openmmlab`` earlier, from ``import
    mmbiformer``, would cost seconds and change other packages where only the op layer
    is wanted). It takes itself off ``sys.meta_path`` after the first one."""

    def find_spec(self, name, path, target=None):
        if name not in TOOLBOX_REGISTRIES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, 'exec_module'):
            return None
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _stop_watching()
            register_all_modules()

        spec.loader.exec_module = exec_then_register  # this spec's own loader object
        return spec


def _stop_watching() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterToolbox)]


if 'mmengine' in sys.modules:  # inside OpenMMLab (a config's custom_imports)
    from . import openmmlab  # noqa: F401
else:
    _stop_watching()  # one watcher, even if the package is loaded again
    sys.meta_path.insert(0, _RegisterAfterToolbox())


def register_all_modules() -> None:
    """Register mmbiformer's modules (backbone, plug-ins, hooks, runner, ...) in the
    OpenMMLab registries, as ``mmdet.utils.register_all_modules()`` does for mmdet: call
    it before building from a registry in your own code (``MODELS.build(dict(
    type='BiFormer'))``). Configs do it with ``custom_imports``; the tools do it
    themselves. Calling it again does nothing."""
    _stop_watching()
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
