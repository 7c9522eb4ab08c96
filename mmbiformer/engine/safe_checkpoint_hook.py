"""mmengine's ``CheckpointHook``, with rotation that never deletes the last checkpoint
before the next one is complete, and with its keys checked before training.

mmengine's hook removes the oldest checkpoint *before* writing the new one. With
``max_keep_ckpts=1`` (what our disk-full message recommends), a save that then fails or
is killed leaves no checkpoint at all, and ``last_checkpoint`` names a deleted file.
Here the removals the hook asks for are held back until the new checkpoint is written
and renamed into place (``AtomicSaveRunner``); a failed save removes nothing.

A misspelt key (``max_keep_ckpt=1``) reaches mmengine's ``runner.save_checkpoint`` as
an unexpected keyword, a ``TypeError`` at the first save, after a whole epoch. Here it
is refused when the hook is built, naming the valid keys.
"""
import inspect

from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..errors import UserError

# The keys CheckpointHook takes by name; anything else it would pass to save_checkpoint.
KEYS = sorted(name for name, p in inspect.signature(CheckpointHook.__init__).parameters.items()
              if name != 'self' and p.kind is not p.VAR_KEYWORD)


class _DeferredRemovals:
    """The hook's file backend, with ``remove`` / ``rmtree`` recorded, not done."""

    def __init__(self, backend, removals: list):
        self._backend, self._removals = backend, removals

    def remove(self, path):
        self._removals.append(('remove', path))

    def rmtree(self, path):
        self._removals.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that removes old checkpoints after the new one is saved."""

    def __init__(self, *args, **kwargs):
        unknown = sorted(set(kwargs) - set(KEYS))
        if unknown:
            raise UserError(
                f'default_hooks.checkpoint: unknown key{"s" * (len(unknown) > 1)} '
                f'{", ".join(unknown)}; CheckpointHook takes {", ".join(KEYS)}')
        super().__init__(*args, **kwargs)

    def _save_checkpoint_with_step(self, runner, step, meta):
        backend, removals = self.file_backend, []
        self.file_backend = _DeferredRemovals(backend, removals)
        try:  # raises on a failed save: then nothing is removed
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.file_backend = backend
        for how, path in removals:
            getattr(backend, how)(path)


def safe_default_hooks(hooks):
    """``default_hooks`` with mmengine's ``CheckpointHook`` (given by name, by class or
    left to mmengine's default) replaced by :class:`SafeCheckpointHook`."""
    hooks = dict(hooks or {})
    ckpt = hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))
    if isinstance(ckpt, dict) and ckpt.get('type') in ('CheckpointHook', CheckpointHook):
        hooks['checkpoint'] = dict(ckpt, type=SafeCheckpointHook)
    return hooks
