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
from helpers import ROOT

CONFIG = 'configs/det/retinanet_biformer_t.py'
SIZE = (96, 128)

@pytest.mark.slow
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """tools/train.py (in this process) with a disk that fills up during the second
    checkpoint: half of it is written, then the write fails as a full disk does. Only one
    checkpoint is kept (``max_keep_ckpts=1``, as the message advises): the first is
    removed only once the second is complete, so it is still there."""
    import errno

    from mmengine.fileio.backends import LocalBackend
    from helpers import tool_error
    put, saves = LocalBackend.put, []

    def failing_put(self, obj, filepath):
        if str(filepath).endswith(('.pth', '.pth.part')):
            saves.append(filepath)
            if len(saves) == 2:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                raise OSError(errno.ENOSPC, 'No space left on device', str(filepath))
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', failing_put)
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=4, num_val=1, size=SIZE)
    work = str(tmp_path / 'w')
    opts = as_cli(short_run_options('retinanet', coco, SIZE, 2))
    out = tool_error('tools/train.py', CONFIG, '--work-dir', work, '--cfg-options', *opts,
                     'train_cfg.val_interval=10', 'default_hooks.checkpoint.max_keep_ckpts=1')
    assert f'could not write the checkpoint {osp.join(work, "epoch_2.pth")}' in out, out
    assert 'No space left on device' in out and 'MiB free' in out
    assert f'{osp.join(work, "epoch_1.pth")} is intact' in out
    assert sorted(f for f in os.listdir(work) if 'pth' in f) == ['epoch_1.pth']
    torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'epoch_1.pth')


# tools/train.py where rank 1 stalls before its second training iteration (as a hung
# loader or device would), far longer than the process group's timeout.
STALLED_RANK = '''
import os, runpy, sys, time
from mmengine.runner import loops
run_iter = loops.EpochBasedTrainLoop.run_iter
def stalling(self, idx, data_batch):
    if os.environ.get('RANK') == '1' and self._iter == 1:
        time.sleep(300)
    return run_iter(self, idx, data_batch)
loops.EpochBasedTrainLoop.run_iter = stalling
sys.argv = ['tools/train.py'] + sys.argv[1:]
runpy.run_path('tools/train.py', run_name='__main__')
'''


@pytest.mark.slow
def test_stalled_rank_is_named_after_the_configured_timeout(tmp_path):
    """2 processes (gloo on the CPU), rank 1 stalls: rank 0 ends after the config's
    timeout (12 s, not PyTorch's 30 minutes) with one message naming rank 1, its last
    progress and the resume command; torchrun then stops rank 1, and the run fails."""
    import socket
    import time
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=4, num_val=1, size=SIZE)
    work = str(tmp_path / 'w')
    script = tmp_path / 'stalled_train.py'
    script.write_text(STALLED_RANK)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    opts = as_cli(short_run_options('retinanet', coco, SIZE, 2))  # 1 iteration an epoch
    start = time.time()
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={port}', str(script), CONFIG, '--work-dir', work,
         '--launcher', 'pytorch', '--cfg-options', *opts, 'env_cfg.dist_cfg.timeout=12',
         'train_cfg.val_interval=10'],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.time() - start < 200, out[-3000:]
    assert 'error: rank 0 of 2: a collective operation timed out after 12 s' in out, out[-3000:]
    assert 'Rank(s) that did not answer: rank 1 (last: train iteration 1 done)' in out
    # A command that runs here: dist_train.sh refuses 2 processes without GPUs.
    assert (f'python -m torch.distributed.run --nproc_per_node=2 tools/train.py {CONFIG} '
            f'--launcher pytorch --resume --work-dir {work}') in out


def test_a_failed_save_says_what_to_do_for_its_cause(tmp_path):
    """A full disk asks for space; a file-size limit (ulimit -f) names the limit, not
    the disk; other errors ask to fix the cause. Each names the intact checkpoint."""
    import errno

    from mmbiformer.engine.atomic_save_runner import _explain
    (tmp_path / 'epoch_1.pth').write_bytes(b'x')
    final = str(tmp_path / 'epoch_2.pth')
    full = _explain(final, OSError(errno.ENOSPC, 'No space left on device'))
    assert 'free some space and continue with --resume' in full
    big = _explain(final, OSError(errno.EFBIG, 'File too large'))
    assert 'ulimit -f' in big and 'free some space' not in big
    assert f'{tmp_path / "epoch_1.pth"} is intact' in big
    denied = _explain(final, OSError(errno.EACCES, 'Permission denied'))
    assert 'fix the cause above and continue with --resume' in denied


# A finished run's end in a fresh process with the tools' imports: a DDP model held in a
# reference cycle, as mmengine's runner holds it, then the threads left running (all of
# them, by name: a new gloo thread names itself a moment after it starts).
# (Without torch._dynamo imported, which mmengine.model imports, some of torch's own
# state keeps the group alive after destroy_process_group.)
GLOO_RUN_END = '''
import os, sys, torch, torch.distributed as dist
import mmengine.runner  # noqa: F401
torch.set_num_threads(1)  # no intra-op pool threads come and go
from torch.nn.parallel import DistributedDataParallel
from mmbiformer.utils.distributed import distributed_run

def threads():
    tasks = f'/proc/{os.getpid()}/task'
    return sorted(open(f'{tasks}/{t}/comm').read().strip() for t in os.listdir(tasks))

def train_like_a_runner():
    runner = {'model': DistributedDataParallel(torch.nn.Linear(2, 2))}
    runner['self'] = runner
    runner['model'](torch.ones(1, 2)).sum().backward()

before = threads()
dist.init_process_group('gloo', init_method='file://' + sys.argv[1], rank=0, world_size=1)
running = threads()
with distributed_run(60):
    train_like_a_runner()
print(repr((before, running, threads(), dist.is_initialized())))
'''


@pytest.mark.skipif(not osp.isdir('/proc/self/task'), reason='threads listed by /proc')
def test_the_process_group_is_freed_when_the_run_ends(tmp_path):
    """gloo's threads end with a finished run: left for the interpreter's exit, they
    aborted 2-process runs that had saved everything (SIGABRT, 'terminate called
    without an active exception')."""
    proc = subprocess.run([sys.executable, '-c', GLOO_RUN_END, str(tmp_path / 'store')],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, running, after, initialized = eval(proc.stdout.splitlines()[-1])
    assert len(running) > len(before), (before, running)  # gloo's threads
    assert after == before and not initialized, (before, running, after)
