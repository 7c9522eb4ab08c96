"""Exact resume: the random-number state travels with every checkpoint.

mmengine seeds the run once at its start and stores only the seed: a resumed run
re-seeds, so from the resume point on random flips, crops, drop path and the data
loader's worker seeds differ from the run it replaces. This hook stores the state of
Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA
generator in each checkpoint (``rng_state``), and restores it on ``--resume``.

Where it is restored matters: after the checkpoint is written the uninterrupted run
goes on to validate (whose data loader draws from torch's generator) before the next
training iteration, while the resumed run does not. So both runs restore the saved
state right before the next training epoch / iteration: from there they are the same.
The state holds only tensors, ints and tuples, so checkpoints still load with
``weights_only=True``.

``tools/train.py`` adds the hook to every run. Not covered: the internal state of
persistent data-loader workers (``persistent_workers=True`` keeps workers, and their
generators, across epochs; a resumed run starts fresh ones), and, in iteration-based
runs without loader workers, the augmentation of the first batch after the resume
point (it is drawn before the first hook that can restore the state).
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

KEY = 'rng_state'


def capture_rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(python=random.getstate(),
                 numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                        int(has_gauss), float(gauss)),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise RuntimeError(
                f'the checkpoint holds the random state of {len(cuda)} GPUs, this '
                f'process sees {torch.cuda.device_count()}: resume on the same number '
                f'of GPUs per process for an exact continuation')
        torch.cuda.set_rng_state_all(cuda)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random-number state in checkpoints and restore it on resume."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = capture_rng_state()
        checkpoint[KEY] = state
        self._pending = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False) and KEY in checkpoint:
            restore_rng_state(checkpoint[KEY])
            self._pending = checkpoint[KEY]

    def _restore_pending(self) -> None:
        if self._pending is not None:
            restore_rng_state(self._pending)
            self._pending = None

    def before_train_epoch(self, runner) -> None:
        # Epoch-based: before the epoch's data loader draws its first batch.
        if _epoch_based(runner):
            self._restore_pending()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # Iteration-based: a resumed run first replays the data loader up to the
        # resume point (mmengine skips batches by loading them), so the state is set
        # after that, before the next step.
        if not _epoch_based(runner):
            self._restore_pending()


def _epoch_based(runner) -> bool:
    from mmengine.runner import EpochBasedTrainLoop
    return isinstance(runner.train_loop, EpochBasedTrainLoop)
