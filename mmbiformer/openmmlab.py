"""mmbiformer inside OpenMMLab: the stack fixes (:mod:`mmbiformer.compat`) and every
registration (backbone, plug-ins, hooks, runner, data guards, optimizer constructor).

Configs name it in ``custom_imports``; the tools import it before any toolbox. The op
layer (:mod:`mmbiformer.ops`) needs none of it. Detection-only components are in
``mmbiformer.models.det``, which the detection configs import as well.
"""
import warnings

# setuptools (>= 80, within torch's range) warns on every ``import pkg_resources``, and
# mmengine 0.10.7 imports it in several modules: 4-5 copies of the same warning before
# any tool's own output. Exactly that warning is silenced, nothing else.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

from . import compat  # noqa: E402

compat.apply()

from . import data, engine, models  # noqa: E402,F401  (their modules register)


def _check_checkout() -> None:
    """A tool of one clone run while this environment's editable install points at
    another (``tools/setup.sh`` run in a second clone) imports the other clone's code:
    say so, once, rather than run it silently."""
    import os
    import sys
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
