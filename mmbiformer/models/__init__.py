from .backbones import BiFormer
from .plugins import BRABlock

__all__ = ['BiFormer', 'BRABlock']
