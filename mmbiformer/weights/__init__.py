"""Weights: reading and checking checkpoints (``checkpoint``), converting official ones
(``converters``), fetching them by model-zoo name (``model_zoo``) and loading them into
a backbone (``pretrained``, what ``init_cfg=dict(type='Pretrained')`` runs).

``checkpoint`` and ``converters`` build on nothing else here; ``model_zoo`` on both;
``pretrained`` on all three."""
from .checkpoint import CheckpointError, check_model_checkpoint, safe_load
from .converters import convert_official_file
from .model_zoo import ModelZooError, config_file, fetch, resolve_checkpoint
from .pretrained import load_pretrained_backbone

__all__ = ['CheckpointError', 'ModelZooError', 'check_model_checkpoint', 'config_file',
           'convert_official_file', 'fetch', 'load_pretrained_backbone',
           'resolve_checkpoint', 'safe_load']
