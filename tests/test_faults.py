"""Faults a long run meets (CPU, tiny RetinaNet on generated COCO data, through
tools/train.py): each ends in one clear message, with nothing lost."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmbiformer.testing import MAKERS
from mmbiformer.utils.short_run import as_cli, short_run_options
from conftest import ROOT

CONFIG = 'configs/det/retinanet_biformer_t.py'
SIZE = (96, 128)

# tools/train.py with a disk that fills up during the second checkpoint: half of it is
# written, then the write fails as a full disk does (ENOSPC).
FULL_DISK = '''
import errno, runpy, sys
from mmengine.fileio.backends import LocalBackend
put, saves = LocalBackend.put, []
def failing_put(self, obj, filepath):
    if str(filepath).endswith('.pth') or str(filepath).endswith('.pth.part'):
        saves.append(filepath)
        if len(saves) == 2:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device', str(filepath))
    return put(self, obj, filepath)
LocalBackend.put = failing_put
sys.argv = ['tools/train.py'] + sys.argv[1:]
runpy.run_path('tools/train.py', run_name='__main__')
'''


@pytest.mark.slow
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path):
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=4, num_val=1, size=SIZE)
    work = str(tmp_path / 'w')
    opts = as_cli(short_run_options('retinanet', coco, SIZE, 2))
    proc = subprocess.run([sys.executable, '-c', FULL_DISK, CONFIG, '--work-dir', work,
                           '--cfg-options', *opts, 'train_cfg.val_interval=10'],
                          cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and 'Traceback' not in out, out[-3000:]
    assert f'could not write the checkpoint {osp.join(work, "epoch_2.pth")}' in out
    assert 'No space left on device' in out and 'MiB free' in out
    assert f'{osp.join(work, "epoch_1.pth")} is intact' in out
    assert sorted(f for f in os.listdir(work) if 'pth' in f) == ['epoch_1.pth']
    torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'epoch_1.pth')
