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

Under distributed training every process has its own state (drop path, flips in its
loader): each checkpoint holds all of them (``rng_state_per_rank``, gathered when the
checkpoint is saved) and each process restores its own; ``rng_state`` stays process
0's, as older checkpoints have it.

``tools/train.py`` adds the hook to every run. Not covered (said in a warning when a
run resumes with them): the internal state of persistent data-loader workers (``persistent_workers=True`` keeps workers, and their
generators, across epochs; a resumed run starts fresh ones), and, in iteration-based
runs without loader workers, the augmentation of the first batch after the resume
point (it is drawn before the first hook that can restore the state).
"""
import random
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

KEY = 'rng_state'
PER_RANK_KEY = 'rng_state_per_rank'


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

    # Before the CheckpointHook (VERY_LOW) in after_train_epoch / after_train_iter: the
    # state is captured there, on every process (the checkpoint is written by process
    # 0 alone, so its before_save_checkpoint cannot gather from the others).
    priority = 'LOW'

    def __init__(self):
        self._pending: Optional[dict] = None
        self._saved: Optional[dict] = None
        self._gathered: Optional[list] = None

    def _capture_for_save(self) -> None:
        state = capture_rng_state()
        world, _ = _world()
        self._gathered = None
        if world > 1:
            self._gathered = [None] * world
            dist.all_gather_object(self._gathered, state)
        # Every process continues from here, as a run resumed from this save does.
        self._saved = self._pending = state

    def after_train_epoch(self, runner) -> None:
        if _checkpoint_now(runner, by_epoch=True):
            self._capture_for_save()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if _checkpoint_now(runner, by_epoch=False):
            self._capture_for_save()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._saved is not None:  # captured for this save, on every process
            checkpoint[KEY] = self._saved
            if self._gathered is not None:
                checkpoint[PER_RANK_KEY] = self._gathered
            self._saved = self._gathered = None
        else:  # a save not foreseen (e.g. the best checkpoint after validation)
            checkpoint[KEY] = capture_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False) or KEY not in checkpoint:
            return
        world, rank = _world()
        states = checkpoint.get(PER_RANK_KEY)
        if states is not None and len(states) == world:
            state = states[rank]
        else:
            state = checkpoint[KEY]
            if world > 1 or states is not None:
                saved = len(states) if states is not None else 1
                runner.logger.warning(
                    f'the checkpoint holds the random state of {saved} process(es), this '
                    f'run has {world}: every process continues from process 0\'s state, '
                    f'so the resumed run is not an exact continuation (resume on '
                    f'{saved} process(es) for that)')
        _warn_persistent_workers(runner)
        restore_rng_state(state)
        self._pending = state

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


def _checkpoint_now(runner, by_epoch: bool) -> bool:
    """Whether mmengine's CheckpointHook saves at this point (its own conditions)."""
    from mmengine.hooks import CheckpointHook
    hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
    if hook is None or hook.by_epoch != by_epoch:
        return False
    if by_epoch:
        return bool(hook.every_n_epochs(runner, hook.interval, hook.save_begin)
                    or (hook.save_last and hook.is_last_train_epoch(runner)))
    return bool(hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                or (hook.save_last and hook.is_last_train_iter(runner)))


def _world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _warn_persistent_workers(runner) -> None:
    loader = (getattr(runner, 'cfg', None) or {}).get('train_dataloader') or {}
    if loader.get('persistent_workers') and loader.get('num_workers', 0) > 0:
        runner.logger.warning(
            'resuming with persistent data-loader workers '
            '(train_dataloader.persistent_workers=True): their random state is not in '
            'the checkpoint, so augmentations after the resume point differ from the '
            'interrupted run (exact resumption needs persistent_workers=False)')


def _epoch_based(runner) -> bool:
    from mmengine.runner import EpochBasedTrainLoop
    return isinstance(runner.train_loop, EpochBasedTrainLoop)
