"""BRA as a plug-in block for other networks (ResNet ``plugins``, CSP layers)."""
from .bra_block import BRABlock

__all__ = ['BRABlock']
