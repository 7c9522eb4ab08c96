"""Where mmbiformer registers its modules.

BiFormer goes into mmengine's root ``MODELS`` registry: the registries of mmpretrain,
mmdet and mmseg are its children and fall back to it, so ``dict(type='BiFormer')``
builds under any of those default scopes without importing all three toolboxes.
"""
from mmengine.registry import MODELS

__all__ = ['MODELS']
