"""Reading checkpoint files: safe loading, the weights in any known layout, and the
check that a file fits a model. Files only: resolving model-zoo names is
:mod:`mmbiformer.weights.model_zoo`, which builds on this module (and never the reverse).

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


def load_weights_only(path: str, map_location='cpu', mmap: bool = False):
    """``torch.load`` with ``weights_only=True``. ``mmap``: the tensors are mapped from
    the file, not read: a check that looks at keys, shapes or records (not every value)
    reads a few pages instead of the whole file and its optimizer state. Files in
    torch's old (non-zip) format cannot be mapped and are read whole."""
    if mmap:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        except RuntimeError as e:
            if 'mmap' not in str(e):
                raise
    return torch.load(path, map_location=map_location, weights_only=True)


def safe_load(path: str, map_location='cpu', mmap: bool = False) -> dict:
    """:func:`load_weights_only` with errors that name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return load_weights_only(path, map_location, mmap)
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
            f'({type(e).__name__}: {_torch_reason(text)}). {_corrupt_fix(path)}') from e


def zoo_cache_dir() -> str:
    """Where model-zoo checkpoints are downloaded to (``MMBIFORMER_HOME``, else the
    user's cache folder)."""
    home = os.environ.get('MMBIFORMER_HOME') or os.path.join(
        os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')), 'mmbiformer')
    return os.path.join(home, 'checkpoints')


def _torch_reason(text: str) -> str:
    """torch.load's reason, without its advice to load with ``weights_only=False``
    (unsafe for a file of unknown origin)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith('Weights only load failed'):
        # The unpickler's own words follow its "WeightsUnpickler error:" line.
        after = [ln for ln in lines[1:] if 'weights_only' not in ln
                 and not ln.startswith('Check the documentation')]
        return after[0] if after else 'not a pickle of tensors'
    return lines[0] if lines else ''


def _intact(path: str) -> bool:
    """A checkpoint file whose zip directory reads (as every torch.save file has)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _corrupt_fix(path: str) -> str:
    """What to do about the unreadable checkpoint ``path``: download a model-zoo file
    anew; for a training checkpoint, the newest intact one beside it."""
    import glob
    full = os.path.abspath(path)
    if full.startswith(os.path.abspath(zoo_cache_dir()) + os.sep):
        return ('It is a model-zoo download: delete it and run the command again to '
                'download it anew.')
    others = [p for p in glob.glob(os.path.join(os.path.dirname(full), '*.pth'))
              if os.path.abspath(p) != full and _intact(p)]
    if others:
        newest = max(others, key=os.path.getmtime)
        # Said for every tool (test, demo, --resume, load_from): no tool's option named.
        return f'The newest intact checkpoint beside it is {newest}: use that one instead.'
    return ('Replace it with an intact copy (a save or a copy that was cut short leaves '
            'an incomplete file).')


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


def stage_depths(keys, prefix: str = '') -> list:
    """Blocks per stage of a BiFormer state dict (``<prefix>stages.I.J.*`` keys)."""
    depths = [0, 0, 0, 0]
    for k in keys:
        if not k.startswith(prefix):
            continue
        parts = k[len(prefix):].split('.')
        if len(parts) > 2 and parts[0] == 'stages' and parts[1].isdigit() \
                and parts[2].isdigit() and int(parts[1]) < 4:
            depths[int(parts[1])] = max(depths[int(parts[1])], int(parts[2]) + 1)
    return depths


def more_blocks(own, state, prefix: str = '') -> str:
    """Where the weights ``state`` hold more BiFormer blocks in some stage than the model
    whose weights are ``own`` (a bigger arch's checkpoint: its extra blocks would be
    dropped without a word), said as both models' blocks per stage; '' if nowhere."""
    mine, theirs = stage_depths(own, prefix), stage_depths(state, prefix)
    if not any(mine) or all(t <= m for t, m in zip(theirs, mine)):
        return ''
    return f'it holds {theirs} blocks per stage, this model {mine}'


def check_finite(state: Dict[str, torch.Tensor], path: str) -> None:
    """Refuse weights holding NaN or inf: a diverged run's checkpoint evaluates to
    empty metrics and draws nothing, with exit 0, if it is loaded at all."""
    bad = [k for k, v in state.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f'{path}: {len(bad)} of its {len(state)} weights hold NaN or inf values (e.g. '
            f'{bad[:3]}): the run that saved it diverged. Use an earlier checkpoint of '
            f'that run, and continue from it with a lower learning rate (or bf16 instead '
            f'of fp16).')


# Buffers that older checkpoints may lack without changing any result.
_OPTIONAL_SUFFIXES = ('num_batches_tracked', )


EVALUATE_HINT = 'To evaluate such a model anyway, pass --allow-partial.'


def check_model_checkpoint(model: torch.nn.Module, path: str,
                           allow_partial: bool = False, heads_may_differ: bool = False,
                           hint: str = EVALUATE_HINT) -> None:
    """Refuse a checkpoint that would leave weights of ``model`` unloaded or mis-shaped.

    mmengine loads ``load_from`` (test, demo, inferencers, the start of a fine-tune)
    non-strictly and only logs what did not fit, so a wrong file evaluates or trains a
    mostly random model with exit 0. This reads the file as mmengine will and compares
    keys and shapes with ``model``; with ``allow_partial`` a mismatch is logged
    instead. Keys the model does not have (``unexpected``) are reported but not refused
    on their own. ``heads_may_differ`` (a fine-tune's start): the heads' weights may be
    missing or of other shapes (another number of classes); the rest must fit. ``hint``
    ends the refusal: how to go on anyway.
    """
    model = getattr(model, 'module', model)  # DDP / TTA wrappers
    state = extract_state_dict(safe_load(path, mmap=True), path)
    check_finite(state, path)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in own]
    misshaped = [f'{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}'
                 for k in own if k in state and state[k].shape != own[k].shape]
    if heads_may_differ and _heads_of(state) == _heads_of(own):
        missing = [k for k in missing if not _is_head(k)]
        misshaped = [m for m in misshaped if not _is_head(m)]
    extra = more_blocks(own, state, 'backbone.')
    if extra and not misshaped:  # a bigger arch of the same width: its blocks dropped
        message = (f'{path} is the checkpoint of a bigger model than this config builds: '
                   f'{extra} (e.g. BiFormer-S weights for a T config); its '
                   f'{len(unexpected)} weights the model does not have would be dropped. '
                   f'Use the config it was trained with.')
        if not allow_partial:
            raise CheckpointError(f'{message} {hint}')
        print_log(message + ' Loading it anyway (--allow-partial).', logger='current',
                  level=30)
        return
    if not missing and not misshaped:
        if unexpected:
            print_log(f'{path}: {len(unexpected)} weights the model does not have were '
                      f'ignored (e.g. {unexpected[:3]})', logger='current', level=30)
        return
    message = (
        f'{path} does not fit this model: of its {len(own)} weights {len(missing)} are '
        f'missing from the file, {len(misshaped)} have another shape, and the file has '
        f'{len(unexpected)} the model does not.' +
        (f' Missing e.g. {missing[:3]}.' if missing else '') +
        (f' Other shapes e.g. {misshaped[:2]}.' if misshaped else '') +
        (f' Unexpected e.g. {unexpected[:3]}.' if unexpected else '') +
        f' Likely cause: {_likely_cause(own, state, missing, misshaped)}')
    if allow_partial:
        print_log(message + ' Loading it anyway (--allow-partial).', logger='current',
                  level=30)
        return
    raise CheckpointError(f'{message} {hint}')


# Weight-name prefixes that tell which toolbox's task a whole model is for.
_TASK_HEADS = (('a segmentation (mmseg)', ('decode_head.', 'auxiliary_head.')),
               ('a detection (mmdet)', ('rpn_head.', 'roi_head.', 'bbox_head.')),
               ('a classification (mmpretrain)', ('head.fc.', )))


def _task_of(keys) -> str:
    for task, prefixes in _TASK_HEADS:
        if any(k.startswith(prefixes) for k in keys):
            return task
    return ''


def _is_head(key: str) -> bool:
    return key.split('.')[0].endswith('head')


def _heads_of(keys) -> list:
    """The top-level head modules of a whole model's weights (``rpn_head``, ...)."""
    return sorted({k.split('.')[0] for k in keys if _is_head(k)})


def _likely_cause(own, state, missing, misshaped) -> str:
    file_task, model_task = _task_of(state), _task_of(own)
    file_heads, model_heads = _heads_of(state), _heads_of(own)
    if file_task and file_task == model_task and file_heads != model_heads:
        return (f'it is the checkpoint of another {file_task.split()[1]} model: its heads '
                f'are {", ".join(file_heads)}, this config\'s are {", ".join(model_heads)} '
                f'(e.g. a RetinaNet checkpoint for a Mask R-CNN config): use the config it '
                f'was trained with; to start from its backbone instead, train with '
                f"model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH, "
                f"prefix='backbone.').")
    if file_task and model_task and file_task != model_task:
        heads = sorted({k.split('.')[0] for k in state
                        if k.startswith(sum((p for _, p in _TASK_HEADS), ()))})
        return (f'it is the checkpoint of {file_task} model (its heads: '
                f'{", ".join(heads)}), and this config builds {model_task} model: use the '
                f'config it was trained with; to start from its backbone instead, train '
                f"with model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH, "
                f"prefix='backbone.').")
    backbone_only = ('it holds the backbone only (ImageNet weights, say): to start from '
                     "it, train with model.backbone.init_cfg=dict(type='Pretrained', "
                     'checkpoint=PATH); it cannot be evaluated as a whole model.')
    if not set(own) & set(state):
        if set(own) & {'backbone.' + k for k in state}:
            return backbone_only
        return ('it is not a checkpoint of this model (no weight name in common): '
                'check the file and the config.')
    if misshaped:
        return ('it was trained with another arch or number of classes (e.g. '
                'BiFormer-T weights for an S or B config): use the config it was '
                'trained with.')
    if not any(k.startswith('backbone.') for k in missing):
        return backbone_only
    return ('it has fewer blocks than the model (e.g. BiFormer-T weights for an S '
            'config): use the config it was trained with.')
