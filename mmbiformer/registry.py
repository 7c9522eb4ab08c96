"""Where mmbiformer registers its modules.

BiFormer goes into mmengine's root ``MODELS`` registry: the registries of mmpretrain,
mmdet and mmseg are its children and fall back to it, so ``dict(type='BiFormer')``
builds under any of those default scopes without importing all three toolboxes.

``RUNTIMES`` names how a backbone's forward runs (the engine's ``BackboneRuntime``), so
that the network's one deprecated way to ask for a runtime (``BiFormer(runtime=...)``)
builds it without the models importing the engine: mmengine imports the location at
the first look-up.
"""
from mmengine.registry import MODELS, Registry

RUNTIMES = Registry('backbone runtime', locations=['mmbiformer.engine.backbone_runtime'])

__all__ = ['MODELS', 'RUNTIMES']
