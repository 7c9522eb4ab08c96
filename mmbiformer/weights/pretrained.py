"""ImageNet (or any BiFormer) weights into a backbone: ``init_cfg=dict(type='Pretrained',
checkpoint=NAME_OR_PATH)`` with official and mmbiformer layouts, model-zoo names
resolved to files first."""
from typing import Optional

import torch
from mmengine.logging import print_log

from .checkpoint import (CheckpointError, backbone_state_dict, extract_state_dict,
                         more_blocks, safe_load, stage_depths)
from .model_zoo import resolve_checkpoint


def load_pretrained_backbone(module: torch.nn.Module, checkpoint: str,
                             prefix: Optional[str] = None,
                             allow_partial: bool = False) -> None:
    """Load an official or mmbiformer checkpoint into a BiFormer backbone.

    Unexpected keys are logged; a checkpoint that matches no key, whose shapes do not
    fit (another arch), or that leaves weights of the stages unloaded (fewer blocks:
    BiFormer-T weights for an S model) raises :class:`CheckpointError`; with
    ``allow_partial`` the last is only logged (a partial load on purpose).
    """
    path = resolve_checkpoint(checkpoint, init_cfg=True)
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
    # Another number of blocks: the tensors that exist fit, so only the counts tell.
    extra = more_blocks(own, state)
    if extra:
        _refuse_unless_allowed(f'{path} is the backbone of a bigger model: {extra}',
                               allow_partial)
    unloaded = [k for k in own if k not in state
                and k.startswith(('stages.', 'downsample_layers.'))
                and not k.endswith('num_batches_tracked')]
    if unloaded:
        mine, theirs = stage_depths(own), stage_depths(state)
        _refuse_unless_allowed(
            f'{path}: {len(unloaded)} weights of the backbone\'s stages are not in it (e.g. '
            f'{unloaded[:3]}): it holds {theirs} blocks per stage, this arch has {mine}',
            allow_partial)
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


def _refuse_unless_allowed(message: str, allow_partial: bool) -> None:
    message += ". Pick the arch the checkpoint was trained with (arch='tiny', 'small' or 'base')"
    if not allow_partial:
        raise CheckpointError(message + "; to load it partly on purpose, add "
                              "allow_partial=True to the backbone's init_cfg.")
    print_log(message + ' (allow_partial=True: loading what fits).', logger='current',
              level=30)
