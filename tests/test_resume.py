"""Resuming: a resumed run is the run it replaces; --resume without a checkpoint is an
error (CPU, tiny RetinaNet on generated COCO data, through tools/train.py)."""
import os.path as osp

import pytest
import torch

from mmbiformer.testing import MAKERS
from mmbiformer.utils.distributed import free_port
from mmbiformer.utils.short_run import as_cli, short_run_options
from helpers import run_in_process

pytestmark = pytest.mark.slow  # end-to-end: CI runs it, -m "not slow" skips

CONFIG = 'configs/det/retinanet_biformer_t.py'
SIZE = (96, 128)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return MAKERS['coco'](str(tmp_path_factory.mktemp('coco')), num_train=4, num_val=1,
                          size=SIZE)


def _opts(coco, *extra):
    # Flips (NumPy) and drop path (torch) draw random numbers every iteration.
    return ['--cfg-options', *as_cli(short_run_options('retinanet', coco, SIZE, 2)),
            'randomness.seed=0', 'randomness.deterministic=True', *extra]


def _final(work):
    return torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu', weights_only=True)


def test_resumed_run_equals_uninterrupted_run(coco, tmp_path, capsys):
    # In this process (seconds instead of a new process's ten each): the runs are seeded.
    whole, split = str(tmp_path / 'whole'), str(tmp_path / 'split')
    run_in_process('tools/train.py', CONFIG, '--work-dir', whole, *_opts(coco))
    # The same run stopped after its first epoch's checkpoint, then resumed.
    run_in_process('tools/train.py', CONFIG, '--work-dir', split,
                   *_opts(coco, 'train_cfg.max_epochs=1'))
    capsys.readouterr()
    run_in_process('tools/train.py', CONFIG, '--work-dir', split, '--resume', *_opts(coco))
    out = capsys.readouterr().out
    assert 'resumed epoch: 1' in out, out[-3000:]
    a, b = _final(whole), _final(split)
    assert 'rng_state' in a and 'rng_state' in b
    assert a['state_dict'].keys() == b['state_dict'].keys()
    differ = [k for k in a['state_dict'] if not torch.equal(a['state_dict'][k],
                                                            b['state_dict'][k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:3]}'
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]))


def test_resume_without_checkpoint_is_an_error(coco, tmp_path):
    from helpers import tool_error
    empty = str(tmp_path / 'typo')
    out = tool_error('tools/train.py', CONFIG, '--work-dir', empty, '--resume',
                     *_opts(coco))
    assert f'no checkpoint to resume from in {empty}' in out
    assert '--resume-if-possible' in out
    out = tool_error('tools/train.py', CONFIG, '--work-dir', empty, '--resume',
                     str(tmp_path / 'nope.pth'), *_opts(coco))
    assert 'nope.pth: no such checkpoint file' in out


def test_resume_if_possible_starts_fresh(coco, tmp_path, capsys):
    work = str(tmp_path / 'fresh')
    run_in_process('tools/train.py', CONFIG, '--work-dir', work, '--resume-if-possible',
                   *_opts(coco, 'train_cfg.max_epochs=1'))
    out = capsys.readouterr().out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert 'resumed epoch' not in out


def _dist_train(work, *args):
    """tools/train.py in 2 processes (gloo on the CPU), as torchrun starts them."""
    import subprocess
    import sys
    from helpers import ROOT
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           f'--master_port={free_port()}', 'tools/train.py', CONFIG, '--work-dir', work,
           '--launcher', 'pytorch', *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_two_process_resume_equals_uninterrupted_run(coco, tmp_path):
    """Each process's random state (drop path, flips) is saved and restored: a
    2-process run resumed after its first epoch ends bit-identical to the whole run."""
    whole, split = str(tmp_path / 'whole'), str(tmp_path / 'split')
    _dist_train(whole, *_opts(coco))
    _dist_train(split, *_opts(coco, 'train_cfg.max_epochs=1'))
    out = _dist_train(split, '--resume', *_opts(coco))
    assert 'resumed epoch: 1' in out, out[-3000:]
    a, b = _final(whole), _final(split)
    assert len(a['rng_state_per_rank']) == 2
    differ = [k for k in a['state_dict'] if not torch.equal(a['state_dict'][k],
                                                            b['state_dict'][k])]
    assert not differ, f'{len(differ)} of {len(a["state_dict"])} tensors differ'
