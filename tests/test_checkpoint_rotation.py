"""Checkpoint rotation removes old checkpoints only after the new one is saved, and the
checkpoint hook's keys are checked when it is built (mmbiformer/engine/
safe_checkpoint_hook.py; the whole run: test_faults.py's disk-full test)."""
from collections import deque

import pytest
from mmengine.fileio import get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import MessageHub

from mmbiformer.engine import SafeCheckpointHook
from mmbiformer.engine.safe_checkpoint_hook import safe_default_hooks
from mmbiformer.errors import UserError


class _Runner:
    """What the hook's save asks of a runner; the third save fails like a full disk."""

    def __init__(self, work_dir):
        self.work_dir, self.saves = str(work_dir), 0
        self.message_hub = MessageHub.get_instance('rotation_test')

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        self.saves += 1
        if self.saves == 3:
            raise OSError(28, 'No space left on device')
        with open(f'{out_dir}/{filename}', 'w') as f:
            f.write('complete')


def test_the_only_checkpoint_is_removed_after_its_successor_is_saved(tmp_path):
    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=1)
    hook.out_dir, hook.filename_tmpl = str(tmp_path), 'epoch_{}.pth'
    hook.file_backend = get_file_backend(str(tmp_path))
    hook.keep_ckpt_ids = deque(maxlen=1)  # as before_train sets them
    runner = _Runner(tmp_path)
    for epoch in (1, 2):
        hook._save_checkpoint_with_step(runner, epoch, {})
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_2.pth']
    with pytest.raises(OSError, match='No space left'):
        hook._save_checkpoint_with_step(runner, 3, {})
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_2.pth']  # kept
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_2.pth')


def test_misspelt_keys_are_refused_when_built():
    with pytest.raises(UserError, match='unknown key max_keep_ckpt; CheckpointHook takes '
                       '.*max_keep_ckpts'):
        SafeCheckpointHook(interval=1, max_keep_ckpt=1)


@pytest.mark.parametrize('given, expected', [
    (None, dict(type=SafeCheckpointHook, interval=1)),  # mmengine's default
    (dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1)),
     dict(type=SafeCheckpointHook, interval=2, max_keep_ckpts=1)),
    (dict(checkpoint=dict(type=CheckpointHook, interval=2)),
     dict(type=SafeCheckpointHook, interval=2)),
    (dict(checkpoint=None), None),  # switched off: stays off
    (dict(checkpoint=dict(type='MyHook')), dict(type='MyHook'))])
def test_runner_swaps_in_the_safe_hook(given, expected):
    assert safe_default_hooks(given)['checkpoint'] == expected
