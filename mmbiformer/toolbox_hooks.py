"""Calling back once a toolbox's registry module has loaded, whatever the import order
(an import hook): what lets ``import mmbiformer`` before a toolbox register the
package's modules in it. Imported by the package root and by :mod:`mmbiformer.openmmlab`;
it imports nothing of the package."""
import importlib.abc
import importlib.machinery
import sys
from typing import Callable

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
