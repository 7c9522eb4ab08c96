"""mmbiformer inside OpenMMLab: the stack fixes (:mod:`mmbiformer.compat`) and every
registration (backbone, plug-ins, hooks, runner, data guards, optimizer constructor).

Configs name it in ``custom_imports``; the tools import it before any toolbox. The op
layer (:mod:`mmbiformer.ops`) needs none of it. The components of one toolbox
(``mmbiformer.models.cls``: mmpretrain's; ``mmbiformer.models.det``: mmdet's) register
at the first look-up in that toolbox's registries, where mmengine imports the
toolbox's own models: this one import registers everything the configs name.
"""
import sys
import warnings
from importlib import import_module

# setuptools (>= 80, within torch's range) warns on every ``import pkg_resources``, and
# mmengine 0.10.7 imports it in several modules: 4-5 copies of the same warning before
# any tool's own output. Exactly that warning is silenced, nothing else.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

from . import compat  # noqa: E402

compat.apply()

from . import data, engine, models  # noqa: E402,F401  (their modules register)
from .toolbox_hooks import after_toolbox  # noqa: E402


def _register_at_first_use(registry_module: str, registries: tuple, ours: str) -> None:
    """Have mmengine import ``ours`` (our components of one toolbox) where it imports
    the toolbox's own models: at the first look-up in any of its ``registries``, when the
    toolbox is whole. Importing it when the registry module loads could be in the middle
    of the toolbox's own imports (a circular import)."""
    def add_location():
        module = sys.modules[registry_module]
        for name in registries:
            registry = getattr(module, name)
            locations = getattr(registry, '_locations', None)  # mmengine 0.10's lazy imports
            if locations is None or getattr(registry, '_imported', False):
                import_module(ours)  # looked up already: the toolbox is whole
            elif ours not in locations:
                locations.append(ours)
    after_toolbox(registry_module, add_location)


_register_at_first_use('mmpretrain.registry', ('MODELS', 'BATCH_AUGMENTS'),
                       'mmbiformer.models.cls')
_register_at_first_use('mmdet.registry', ('MODELS', ), 'mmbiformer.models.det')


def _check_checkout() -> None:
    """A tool of one clone run while this environment's editable install points at
    another (``tools/setup.sh`` run in a second clone) imports the other clone's code:
    say so, once, rather than run it silently."""
    import os
    script = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    root = os.path.dirname(os.path.dirname(script))
    ours = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if (os.path.basename(os.path.dirname(script)) == 'tools'
            and os.path.isfile(os.path.join(root, 'mmbiformer', '__init__.py'))
            and root != ours):
        import logging

        from mmengine.logging import print_log
        print_log(f'{script} runs the mmbiformer package of {ours} (this environment\'s '
                  f'install), not the one beside it in {root}: run tools/setup.sh in '
                  f'{root}, or set PYTHONPATH={root}', logger='current',
                  level=logging.WARNING)


_check_checkout()
