"""Which checkpoint a run resumes from (``mmbiformer.engine.resume``), on work dirs laid
out by hand: moved or copied work dirs, an empty ``last_checkpoint``, damaged files,
and runs that would start from scratch over checkpoints or overwrite later ones."""
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config

from mmbiformer.engine import resume as resume_mod
from mmbiformer.errors import UserError
from mmbiformer.engine.resume import resolve_resume
from helpers import ROOT


def _ckpt(folder, name, epoch, iters=None):
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, name)
    torch.save({'meta': {'epoch': epoch, 'iter': iters if iters is not None else 2 * epoch},
                'state_dict': {'w': torch.full((3, ), float(epoch))}}, path)
    return path


def _run(folder, epochs=(1, 2, 3), pointer=None):
    paths = [_ckpt(folder, f'epoch_{e}.pth', e) for e in epochs]
    with open(osp.join(folder, 'last_checkpoint'), 'w') as f:
        f.write(paths[-1] if pointer is None else pointer)
    return paths


@pytest.fixture
def warnings(monkeypatch):
    said = []
    monkeypatch.setattr(resume_mod, '_warn', said.append)
    return said


def _resolve(work, *args, **kwargs):
    cfg = Config(dict(work_dir=str(work)))
    resolve_resume(cfg, *args, **kwargs)
    return cfg


def test_empty_last_checkpoint_resumes_the_newest(tmp_path, warnings):
    """mmengine truncates last_checkpoint before writing: a crash can leave it empty."""
    paths = _run(str(tmp_path), pointer='')
    cfg = _resolve(tmp_path, 'auto')
    assert cfg.resume and cfg.load_from == paths[-1]
    cfg = _resolve(tmp_path, None, if_possible=True)
    assert cfg.resume and cfg.load_from == paths[-1]


def test_moved_work_dir_resumes_its_own_checkpoints(tmp_path, warnings):
    old, new = str(tmp_path / 'old'), str(tmp_path / 'new')
    _run(old)
    shutil.move(old, new)  # last_checkpoint still names old/epoch_3.pth
    cfg = _resolve(new, 'auto')
    assert cfg.load_from == osp.join(new, 'epoch_3.pth')
    assert any(osp.join(old, 'epoch_3.pth') in w and 'not followed' in w for w in warnings)


def test_copied_work_dir_does_not_resume_the_original(tmp_path, warnings):
    original, copy = str(tmp_path / 'a'), str(tmp_path / 'b')
    _run(original)
    os.makedirs(copy)
    for name in ('epoch_2.pth', 'last_checkpoint'):
        shutil.copy(osp.join(original, name), copy)
    cfg = _resolve(copy, 'auto')
    assert cfg.load_from == osp.join(copy, 'epoch_2.pth')
    assert any(osp.join(original, 'epoch_3.pth') in w for w in warnings)


def test_recorded_progress_decides(tmp_path, warnings):
    """Iteration checkpoints: iter_1000.pth is newer than iter_800.pth, whatever the
    directory listing's order, and a pointer to an older file does not win."""
    _ckpt(str(tmp_path), 'iter_800.pth', 0, 800)
    newest = _ckpt(str(tmp_path), 'iter_1000.pth', 0, 1000)
    with open(tmp_path / 'last_checkpoint', 'w') as f:
        f.write(str(tmp_path / 'iter_800.pth'))
    assert _resolve(tmp_path, 'auto').load_from == newest


def test_damaged_newest_falls_back_and_is_named(tmp_path, warnings):
    paths = _run(str(tmp_path))
    with open(paths[-1], 'r+b') as f:  # a save cut short
        f.truncate(os.path.getsize(paths[-1]) // 2)
    cfg = _resolve(tmp_path, 'auto')
    assert cfg.load_from == paths[1]
    assert any(paths[-1] in w and 'epoch_2.pth' in w for w in warnings)


def test_resume_if_possible_never_starts_over_checkpoints(tmp_path, warnings):
    paths = _run(str(tmp_path), epochs=(1, ))
    with open(paths[0], 'wb') as f:
        f.write(b'')
    with pytest.raises(UserError, match='no complete checkpoint to resume from'):
        _resolve(tmp_path, None, if_possible=True)
    assert osp.isfile(paths[0])


def test_fresh_start_over_checkpoints_is_refused(tmp_path):
    _run(str(tmp_path))
    with pytest.raises(UserError) as e:
        _resolve(tmp_path, None)
    assert 'would overwrite' in str(e.value) and '--start-over' in str(e.value)
    assert '--resume' in str(e.value)


def test_start_over_moves_checkpoints_aside(tmp_path, warnings):
    paths = _run(str(tmp_path))
    cfg = _resolve(tmp_path, None, start_over=True)
    assert cfg.resume is False
    assert not any(osp.exists(p) for p in paths)
    assert not osp.exists(tmp_path / 'last_checkpoint')
    moved, = [d for d in os.listdir(tmp_path) if d.startswith('previous-')]
    assert sorted(os.listdir(tmp_path / moved)) == ['epoch_1.pth', 'epoch_2.pth',
                                                    'epoch_3.pth', 'last_checkpoint']
    with pytest.raises(UserError, match='cannot be combined'):
        _resolve(tmp_path, 'auto', start_over=True)


def test_explicit_older_checkpoint_would_overwrite_later_ones(tmp_path, warnings):
    paths = _run(str(tmp_path))
    with pytest.raises(UserError, match=r'later checkpoints \(epoch_2.pth, epoch_3.pth\)'):
        _resolve(tmp_path, paths[0])
    elsewhere = str(tmp_path / 'branch')  # the same file into a new work dir is fine
    assert _resolve(elsewhere, paths[0]).load_from == paths[0]


def test_train_tool_refuses_to_overwrite_a_run(tmp_path):
    """Through tools/train.py: refused before any training, nothing written."""
    work = str(tmp_path / 'w')
    _run(work)
    before = sorted(os.listdir(work))
    from helpers import tool_error
    out = tool_error('tools/train.py', osp.join(ROOT, 'configs/det/retinanet_biformer_t.py'),
                     '--work-dir', work)
    assert 'already holds checkpoints' in out and '--start-over' in out
    assert sorted(os.listdir(work)) == before


def test_resume_warns_where_it_cannot_be_exact():
    """A checkpoint of 2 processes resumed on 1, with persistent loader workers: both
    named in warnings at resume (not only in the README)."""
    from mmbiformer.engine.rng_state_hook import RNGStateHook, capture_rng_state

    class Logger:
        def __init__(self):
            self.said = []

        def warning(self, message):
            self.said.append(message)

    class Runner:
        _resume = True
        logger = Logger()
        cfg = Config(dict(train_dataloader=dict(num_workers=2, persistent_workers=True)))

    state = capture_rng_state()
    RNGStateHook().after_load_checkpoint(
        Runner, {'rng_state': state, 'rng_state_per_rank': [state, state]})
    said = ' '.join(Runner.logger.said)
    assert 'random state of 2 process(es), this run has 1' in said
    assert 'persistent_workers=True' in said


def test_partial_save_of_a_killed_run_is_removed(tmp_path, warnings):
    paths = _run(str(tmp_path), epochs=(1, ))
    part = tmp_path / 'epoch_2.pth.part'
    part.write_bytes(b'half a checkpoint')
    assert _resolve(tmp_path, 'auto').load_from == paths[0]
    assert not part.exists()
    assert any('epoch_2.pth.part' in w and 'interrupted' in w for w in warnings)



def test_complete_partial_save_newer_than_every_checkpoint_is_finished(tmp_path, warnings):
    """A SIGINT between writing a checkpoint and renaming it leaves a complete
    ``.part``: renamed into place and resumed from (not thrown away with an epoch's
    work). A complete one that is not the newest is removed."""
    _run(str(tmp_path), epochs=(1, ))
    _ckpt(str(tmp_path), 'epoch_2.pth.part', 2)
    cfg = _resolve(tmp_path, 'auto')
    assert cfg.load_from == str(tmp_path / 'epoch_2.pth')
    assert not (tmp_path / 'epoch_2.pth.part').exists()
    assert torch.load(cfg.load_from, weights_only=True)['meta']['epoch'] == 2
    assert any('finished' in w and 'epoch_2.pth.part' in w for w in warnings)
    _ckpt(str(tmp_path), 'epoch_1b.pth.part', 1)  # complete, but behind epoch_2
    assert _resolve(tmp_path, 'auto').load_from == str(tmp_path / 'epoch_2.pth')
    assert not (tmp_path / 'epoch_1b.pth.part').exists()


def test_a_resumed_run_at_its_end_says_nothing_was_left():
    """Resuming a finished run trains nothing; it says so, with the key to raise (and
    says nothing when iterations ran, or for a run from scratch)."""
    from types import SimpleNamespace

    from mmbiformer.engine.resume import NothingLeftToTrain
    said = []
    logger = SimpleNamespace(warning=said.append)
    loop = SimpleNamespace(max_epochs=2)
    for start, end in ((8, 8), (4, 8), (0, 0)):
        runner = SimpleNamespace(iter=start, epoch=2, train_loop=loop, logger=logger)
        hook = NothingLeftToTrain()
        hook.before_train(runner)
        runner.iter = end
        hook.after_train(runner)
    assert said == ['nothing left to train: the run resumed at epoch 2 of max_epochs=2, '
                    'its end. To train longer, raise it (--cfg-options '
                    'train_cfg.max_epochs=N).']
