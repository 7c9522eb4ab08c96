"""mmbiformer: BiFormer (Bi-Level Routing Attention) for OpenMMLab."""
import warnings

# setuptools (>= 80, within torch's range) warns on every ``import pkg_resources``, and
# mmengine 0.10.7 imports it in several modules: 4-5 copies of the same warning before
# any tool's own output. Exactly that warning is silenced, nothing else.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

from . import compat  # noqa: E402

compat.apply()

from . import data  # noqa: E402,F401  (registers CheckedLoad)
from .engine import RNGStateHook  # noqa: E402,F401  (registers the hook)
from .models import BiFormer  # noqa: E402  (registers the backbone)
from .ops import BiLevelRoutingAttention  # noqa: E402

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__']
