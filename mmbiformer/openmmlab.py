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
