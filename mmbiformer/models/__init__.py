from .backbones import BiFormer

__all__ = ['BiFormer']
