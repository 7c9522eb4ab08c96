"""ImageNet (or any BiFormer) weights into a backbone: ``init_cfg=dict(type='Pretrained',
checkpoint=NAME_OR_PATH)`` with official and mmbiformer layouts, model-zoo names
resolved to files first."""
from typing import Optional

import torch
from mmengine.logging import print_log

from .checkpoint import (CheckpointError, backbone_state_dict, extract_state_dict,
                         safe_load)
from .model_zoo import resolve_checkpoint


def load_pretrained_backbone(module: torch.nn.Module, checkpoint: str,
                             prefix: Optional[str] = None) -> None:
    """Load an official or mmbiformer checkpoint into a BiFormer backbone.

    Missing and unexpected keys are logged; a checkpoint that matches no key, or
    whose shapes do not fit (another arch), raises :class:`CheckpointError`.
    """
    path = resolve_checkpoint(checkpoint)
    state = backbone_state_dict(extract_state_dict(safe_load(path), path), prefix)
    own = module.state_dict()
    if not getattr(module, 'out_norm', None) == 'batchnorm':
        # The official classification norm has no place in a dense backbone.
        state = {k: v for k, v in state.items() if not k.startswith('norm.')}
    matched = [k for k in state if k in own]
    if not matched:
        raise CheckpointError(
            f'{path}: none of its {len(state)} weights match the BiFormer backbone '
            f'(checkpoint keys: {sorted(state)[:5]}, expected e.g. {sorted(own)[:3]}). '
            f'Is it a BiFormer checkpoint? Use prefix= if its backbone keys are nested.')
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model '
                  f'{tuple(own[k].shape)}' for k in matched if state[k].shape != own[k].shape]
    if mismatched:
        raise CheckpointError(
            f'{path}: {len(mismatched)} weights do not fit this arch (e.g. '
            f'{"; ".join(mismatched[:3])}). Pick the arch the checkpoint was '
            f'trained with (tiny/small/base).')
    result = module.load_state_dict({k: state[k] for k in matched}, strict=False)
    unexpected = sorted(set(state) - set(own))
    print_log(f'Loaded {len(matched)}/{len(own)} backbone weights from {path}',
              logger='current')
    if result.missing_keys:
        print_log(f'missing keys in checkpoint (kept at init): {result.missing_keys}',
                  logger='current')
    if unexpected:
        print_log(f'unexpected keys in checkpoint (ignored): {unexpected}',
                  logger='current')
