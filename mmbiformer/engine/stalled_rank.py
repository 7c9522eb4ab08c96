"""When a rank stops answering: every other rank ends with a message naming it.

Under DDP each collective waits for every rank; one that stalls (a hung loader or
device, a deadlock) or dies leaves the others blocked until the process group's
timeout, after which PyTorch raises a bare ``Timed out waiting ...ms`` (gloo) that
names no rank. Two pieces make it readable:

* :class:`ProgressMarkHook` writes each rank's progress ("train iteration 12 started")
  to the process group's key-value store (``tools/train.py`` adds it);
* :func:`explain_peer_failure`, called by ``distributed_run`` on a collective's timeout
  or lost connection: this rank flags itself in the store, waits a few seconds for the
  other waiting ranks to flag themselves too, and names those that did not (with their
  last progress), the timeout and the resume command.

The timeout is ``env_cfg.dist_cfg.timeout`` (seconds); the tools set
:data:`DEFAULT_TIMEOUT_S` where a config leaves it unset.
"""
import time
from datetime import timedelta
from typing import Optional

import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

DEFAULT_TIMEOUT_S = 600
PREFIX = 'mmbiformer/'
# How long a rank that timed out waits for the other waiting ranks to say so.
GRACE_S = 5.0
_TIMEOUT_WORDS = ('timed out', 'timeout')
_LOST_WORDS = ('connection reset by peer', 'connection closed by peer', 'broken pipe')


def _store():
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 (a private accessor; no store, no names)
        return None


def mark_progress(text: str) -> None:
    store = _store()
    if store is not None:
        store.set(f'{PREFIX}progress/{dist.get_rank()}', text)


@HOOKS.register_module()
class ProgressMarkHook(Hook):
    """Record each rank's progress in the process group's store (one small write per
    iteration), so that a rank that stops answering can be named with where it was."""

    priority = 'VERY_LOW'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        mark_progress(f'train iteration {runner.iter + 1} started')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        mark_progress(f'train iteration {runner.iter + 1} done')

    def before_val_epoch(self, runner):
        mark_progress('validation started')

    def after_val_epoch(self, runner, metrics=None):
        mark_progress('validation done')

    def before_save_checkpoint(self, runner, checkpoint):
        mark_progress('saving a checkpoint')


def peer_failure_kind(exc: BaseException) -> Optional[str]:
    """'timed out' or 'lost' when ``exc`` is a collective that waited for a rank in
    vain, else None."""
    if not isinstance(exc, RuntimeError):
        return None
    text = str(exc).lower()
    if any(w in text for w in _TIMEOUT_WORDS):
        return 'timed out'
    if any(w in text for w in _LOST_WORDS):
        return 'lost'
    return None


def explain_peer_failure(exc: BaseException, timeout_s: Optional[float] = None,
                         resume: Optional[str] = None, grace_s: float = GRACE_S) -> str:
    """The message for a collective that failed waiting for other ranks (see the
    module doc); falls back to a message without names when the store is gone."""
    kind = peer_failure_kind(exc) or 'failed'
    rank, world = dist.get_rank(), dist.get_world_size()
    limit = f' after {timeout_s:g} s (env_cfg.dist_cfg.timeout)' if timeout_s else ''
    what = (f'a collective operation timed out{limit}' if kind == 'timed out' else
            'the connection to another rank was lost')
    store = _store()
    try:
        store.set_timeout(timedelta(seconds=5))
        store.set(f'{PREFIX}failed/{rank}', '1')
        time.sleep(grace_s)
        silent = [r for r in range(world) if not store.check([f'{PREFIX}failed/{r}'])]

        def progress(r):
            key = f'{PREFIX}progress/{r}'
            return store.get(key).decode() if store.check([key]) else 'no progress recorded'

        if silent:
            names = ' Rank(s) that did not answer: ' + '; '.join(
                f'rank {r} (last: {progress(r)})' for r in silent) + (
                f'; this rank was at: {progress(rank)}.')
        else:
            names = ' Every rank reported waiting: none could be named.'
    except Exception:  # noqa: BLE001 (the store lives in rank 0's process)
        names = (' The ranks could not be asked (the rendezvous store, held by rank 0, '
                 'cannot be reached: rank 0 may be the one that stopped).')
    fix = (f' Checkpoints saved so far are kept: after finding why the rank stalled or '
           f'exited (its log; a hung data loader or device), resume with `{resume}`.'
           if resume else '')
    more = (' A longer env_cfg.dist_cfg.timeout lets slow steps (a long evaluation on '
            'rank 0) finish.' if kind == 'timed out' else '')
    return f'rank {rank} of {world}: {what}.{names}{fix}{more}'
