"""Official BiFormer checkpoints -> mmbiformer (mmpretrain ImageClassifier) layout.

Official ImageNet files keep the weights under ``model`` with the names of the
official ``BiFormer`` module; our backbone uses the same names, so the conversion is a
re-keying: everything but ``head.*`` goes under ``backbone.`` (including the final
BatchNorm ``norm.*``), and ``head.*`` becomes ``head.fc.*`` (mmpretrain LinearClsHead).
"""
import os
from typing import Dict

import torch

from .checkpoint import CheckpointError, extract_state_dict, safe_load

OFFICIAL_MARKER = 'downsample_layers.0.0.weight'


def official_to_mmpretrain(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if OFFICIAL_MARKER not in state:
        raise CheckpointError(
            f'not an official BiFormer checkpoint: no {OFFICIAL_MARKER!r} (keys start '
            f'with {sorted(state)[:3]})')
    return {('head.fc.' + k[len('head.'):]) if k.startswith('head.') else 'backbone.' + k: v
            for k, v in state.items()}


def arch_of(state: Dict[str, torch.Tensor]) -> str:
    """tiny / small / base (or custom) from converted weights' shapes."""
    stem = state.get('backbone.downsample_layers.0.3.weight')
    blocks = {k.split('.')[3] for k in state if k.startswith('backbone.stages.2.')}
    key = (stem.shape[0] if stem is not None else None, len(blocks))
    return {(64, 8): 'tiny', (64, 18): 'small', (96, 18): 'base'}.get(key, 'custom')


def convert_official_file(src: str, dst: str) -> str:
    """Convert an official checkpoint file; the result is written atomically."""
    state = official_to_mmpretrain(extract_state_dict(safe_load(src), src))
    meta = dict(source='official BiFormer checkpoint', converted_from=os.path.basename(src),
                arch=arch_of(state))
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, dst)
    return dst
