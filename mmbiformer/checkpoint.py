"""Loading checkpoints safely and mapping foreign layouts onto our modules.

Layouts understood:

* official BiFormer ImageNet checkpoints: weights under ``model`` with official names
  (``downsample_layers.*``, ``stages.*``, ``norm.*`` = BatchNorm2d, ``head.*``);
* ours / mmengine Runner checkpoints: ``state_dict`` with ``backbone.`` / ``head.``;
* a bare state dict.
"""
import os
from typing import Dict, Optional

import torch
from mmengine.logging import print_log

# Prefixes left by wrappers and by our classifier/detector/segmentor layouts.
_WRAPPER_PREFIXES = ('module.', '_orig_mod.')
# Keys of a whole model that never belong to the backbone.
_NON_BACKBONE_PREFIXES = ('head.', 'neck.', 'decode_head.', 'auxiliary_head.',
                          'rpn_head.', 'roi_head.', 'bbox_head.', 'mask_head.',
                          'data_preprocessor.', 'pre_logits.')


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and the fix."""


def safe_load(path: str, map_location='cpu') -> dict:
    """``torch.load`` with ``weights_only=True`` and errors that name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        text = str(e)
        if 'Unsupported global' in text or 'GLOBAL' in text:  # a foreign class/function
            raise CheckpointError(
                f'{path}: holds Python objects that are not allowed in a safe '
                f'(weights_only) load. If you trust the file, re-save only its '
                f"weights: torch.save({{'state_dict': ckpt['state_dict']}}, NEW_PATH). "
                f'Details: {_unsupported(text)}') from e
        raise CheckpointError(
            f'{path}: is corrupt or not a PyTorch checkpoint '
            f'({type(e).__name__}: {text.splitlines()[0] if text else ""}). '
            f'Delete it and download it again.') from e


def _unsupported(text: str) -> str:
    lines = [ln for ln in text.splitlines() if 'Unsupported' in ln or 'GLOBAL' in ln]
    return (lines or text.splitlines() or [''])[0].strip()


def extract_state_dict(checkpoint: dict, path: str = '<checkpoint>') -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint in any known layout, wrapper prefixes removed."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path}: expected a dict of weights, got '
                              f'{type(checkpoint).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {}
    for k, v in checkpoint.items():
        if not isinstance(v, torch.Tensor):
            continue
        for p in _WRAPPER_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        state[k] = v
    if not state:
        raise CheckpointError(f'{path}: no tensors found (keys: {list(checkpoint)[:8]})')
    return state


def backbone_state_dict(state: Dict[str, torch.Tensor],
                        prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Keys of the backbone, without ``backbone.``; head/neck weights dropped.

    With ``prefix`` given only keys under it are taken (mmengine's Pretrained
    ``prefix`` semantics); otherwise ``backbone.`` is used when present.
    """
    if prefix is None and any(k.startswith('backbone.') for k in state):
        prefix = 'backbone.'
    if prefix:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith(_NON_BACKBONE_PREFIXES)}


def load_pretrained_backbone(module: torch.nn.Module, checkpoint: str,
                             prefix: Optional[str] = None) -> None:
    """Load an official or mmbiformer checkpoint into a BiFormer backbone.

    Missing and unexpected keys are logged; a checkpoint that matches no key, or
    whose shapes do not fit (another arch), raises :class:`CheckpointError`.
    """
    from .model_zoo import resolve_checkpoint  # names -> local files
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
