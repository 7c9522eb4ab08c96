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
from typing import Callable

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__', 'register_all_modules']

# The toolbox registries whose loading registers mmbiformer's modules.
TOOLBOX_REGISTRIES = ('mmdet.registry', 'mmseg.registry', 'mmpretrain.registry')
# Toolbox registry module -> what to call once it has loaded.
_WATCHED: dict = {}


def after_toolbox(registry: str, then: Callable[[], None]) -> None:
    """Call ``then()`` once the toolbox registry module ``registry`` has loaded (now if it
    has). It may load in the middle of the toolbox's own imports: ``then`` must not
    import the toolbox's models."""
    if registry in sys.modules:
        then()
        return
    if then in _WATCHED.get(registry, []):
        return
    _WATCHED.setdefault(registry, []).append(then)
    if not any(isinstance(f, _AfterToolbox) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterToolbox())


class _AfterToolbox(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched toolbox registry module, it wraps the real
    loader so that what waits for it is called once it has loaded. It takes itself off
    ``sys.meta_path`` when nothing is left to watch."""

    def find_spec(self, name, path, target=None):
        if name not in _WATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, 'exec_module'):
            return None
        exec_module = spec.loader.exec_module

        def exec_then_call(module):
            exec_module(module)
            waiting = _WATCHED.pop(name, [])
            if not _WATCHED:
                sys.meta_path[:] = [f for f in sys.meta_path
                                    if not isinstance(f, _AfterToolbox)]
            for then in waiting:
                then()

        spec.loader.exec_module = exec_then_call  # this spec's own loader object
        return spec


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
