"""BiFormer and the BRA plug-ins, registered with OpenMMLab (importing them applies the
stack fixes of :mod:`mmbiformer.compat`, as :mod:`mmbiformer.openmmlab` does)."""
from .. import compat

compat.apply()

from .backbones import BiFormer  # noqa: E402
from .plugins import BRABlock  # noqa: E402

__all__ = ['BiFormer', 'BRABlock']
