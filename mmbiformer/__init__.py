"""mmbiformer: BiFormer (Bi-Level Routing Attention) for OpenMMLab."""
from . import compat

compat.apply()

from .engine import RNGStateHook  # noqa: E402,F401  (registers the hook)
from .models import BiFormer  # noqa: E402  (registers the backbone)
from .ops import BiLevelRoutingAttention  # noqa: E402

__version__ = '0.1.0'
__all__ = ['BiFormer', 'BiLevelRoutingAttention', '__version__']
