from .biformer import ARCH_SETTINGS, BiFormer

__all__ = ['ARCH_SETTINGS', 'BiFormer']
