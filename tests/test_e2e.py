"""End to end through the tools: train, resume, test, for each task (tiny arch, CPU)."""
import glob
import os
import os.path as osp
import re
import subprocess

import pytest

from mmbiformer.testing import MAKERS
from mmbiformer.utils.short_run import TASKS, as_cli, short_run_options
from helpers import ROOT, run_in_process, run_tool, tool_error, tool_metrics

pytestmark = pytest.mark.slow  # end-to-end: CI runs it, -m "not slow" skips

SIZE = (96, 128)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    paths = {}
    for kind in ('coco', 'ade20k', 'imagenet'):
        per_class = kind == 'imagenet'
        paths[kind] = MAKERS[kind](str(root / kind), num_train=2 if per_class else 4,
                                   num_val=1 if per_class else 2, size=SIZE)
    return paths


# Each step where it adds coverage, to keep the suite's time: resuming is checked for
# an iteration-based (seg) and an epoch-based (cls) loop here, and for detection in
# tests/test_resume.py; the segmentation demo in tests/test_tool_errors.py.
@pytest.mark.parametrize('task,keys,resume,demo', [
    ('det', ['coco/bbox_mAP', 'coco/segm_mAP'], False, True),
    ('seg', ['mIoU', 'aAcc'], True, False),
    ('cls', ['accuracy/top1'], True, True),
])
def test_train_resume_test(task, keys, resume, demo, data, tmp_path, capsys):
    config, kind = TASKS[task]
    work = str(tmp_path / task)
    narrow = {}
    if task == 'seg':  # UperNet's 512-wide head dominated the CPU time (and checkpoints)
        narrow = {'model.decode_head.channels': 32, 'model.auxiliary_head.channels': 16}
    opts = lambda n: as_cli({**short_run_options(task, data[kind], SIZE, n),  # noqa: E731
                             **narrow})
    run_in_process('tools/train.py', config, '--work-dir', work, '--cfg-options', *opts(1))
    out = capsys.readouterr().out
    # The console leaves the start-up dumps to the log file.
    logs = glob.glob(osp.join(work, '*', '*.log'))
    assert logs and 'Config:' in open(logs[0]).read(), logs
    assert 'Config:' not in out and 'paramwise_options' not in out, out[:3000]
    first = sorted(f for f in os.listdir(work) if f.endswith('.pth'))
    assert first, os.listdir(work)
    if resume:
        _check_resume(config, work, task, opts, capsys)
    with open(osp.join(work, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    # cls: --cuda-graph adds the backbone's inference graphs (on a CPU it runs eagerly).
    graphs = ['--cuda-graph'] if task == 'cls' else []
    run_in_process('tools/test.py', config, ckpt, '--work-dir', work, *graphs,
                   '--cfg-options', *opts(2))
    metrics = tool_metrics(capsys.readouterr().out)
    for key in keys:
        assert key in metrics, metrics
        assert 0 <= metrics[key] <= 100, metrics
    # The tools run in this process (seconds instead of a new process's ten: the
    # suite's time budget), but for the cls demo below.
    if task == 'det':  # the config the Runner dumped holds every override: same metrics
        dumped = osp.join(work, osp.basename(config))
        preds = tmp_path / 'preds.pkl'
        run_in_process('tools/test.py', dumped, ckpt, '--work-dir', work, '--out', preds)
        out = capsys.readouterr().out
        assert tool_metrics(out) == metrics
        assert 'prefix is not set' not in out  # mmengine's warning for the dump
        assert preds.stat().st_size > 0  # --out's predictions, beside the metrics
        # The short run logs every training batch; the test shows its bar instead.
        assert not [m for m in re.findall(r'Epoch\(test\) \[(\d+)/(\d+)\]', out)
                    if m[0] != m[1]], out[-2000:]
    if demo:  # the inference demo on a val image of another size, with that checkpoint,
        # on the config the run dumped (its loaders wrapped in CheckedLoad, which the
        # inferencers' pipeline edits did not see through)
        image = _first_image(data[kind])
        picture = str(tmp_path / 'demo.jpg')
        dumped = osp.join(work, osp.basename(config))
        args = ('tools/demo.py', dumped, ckpt, image, '--out', picture, '--score-thr', '0',
                '--device', 'cpu', '--cfg-options', *opts(2))
        if task == 'cls':  # mmpretrain's inferencer reads the process-wide default
            _, out = run_tool(*args)  # scope, which earlier tools here have set
        else:
            run_in_process(*args)
            out = capsys.readouterr().out
        if task == 'cls':  # the top 5, best first, with their names
            ranks = re.findall(r'^(\d)\. \S.* \(label \d+, score ([\d.]+)\)$', out, re.M)
            assert [r for r, _ in ranks] == ['1', '2', '3', '4', '5'], out  # 1000 classes
            scores = [float(s) for _, s in ranks]
            assert scores == sorted(scores, reverse=True), out
        else:
            import cv2
            assert cv2.imread(picture).shape == cv2.imread(image).shape


def _check_resume(config, work, task, opts, capsys):
    """Resume with a longer schedule: the counter continues, nothing is re-done."""
    run_in_process('tools/train.py', config, '--work-dir', work, '--resume',
                   '--cfg-options', *opts(2))
    out = capsys.readouterr().out
    resumed = re.search(r'resumed epoch: (\d+), iter: (\d+)', out)
    assert resumed, out[-3000:]
    done_iters = int(resumed.group(2))
    assert done_iters > 0
    train_lines = re.findall(r'(Epoch|Iter)\(train\)\s+\[(\d+)\]', out)
    if task == 'seg':  # iteration-based: only iterations after the resume point
        assert all(int(i) > done_iters for _, i in train_lines), train_lines
    else:  # epoch-based: only the second epoch
        assert train_lines and all(int(e) == 2 for _, e in train_lines), train_lines


def _first_image(root):
    for pattern in ('val2017/*.jpg', 'ADEChallengeData2016/images/validation/*.jpg',
                    'val/*.JPEG'):
        found = sorted(glob.glob(osp.join(root, pattern)))
        if found:
            return found[0]
    raise AssertionError(f'no val image under {root}')


def test_missing_data_root_is_a_clear_error(tmp_path):
    out = tool_error('tools/train.py', 'configs/det/maskrcnn_biformer_t.py',
                     '--work-dir', str(tmp_path), '--cfg-options',
                     f'train_dataloader.dataset.data_root={tmp_path}/nope/')
    assert 'paths not found' in out and 'nope' in out
    assert 'tools/generate_data.py coco' in out and 'annotations/instances_' in out
    # Every path to set in one message (the validation data and evaluator too), not
    # one per run: each key once, in one --cfg-options line.
    options = [ln for ln in out.splitlines() if '--cfg-options' in ln][-1]
    for key in ('train_dataloader.dataset.data_root', 'val_dataloader.dataset.data_root',
                'val_evaluator.ann_file'):
        assert f'{key}=PATH' in options, out[-2000:]


def test_missing_config_is_a_clear_error():
    code, out = run_tool('tools/train.py', 'configs/det/nope.py', check=False)
    assert code != 0 and 'Traceback' not in out
    assert 'config file not found: configs/det/nope.py' in out
    assert 'maskrcnn_biformer_s.py' in out


def test_dist_train_refuses_more_gpus_than_present():
    proc = subprocess.run(['bash', 'tools/dist_train.sh', 'configs/det/maskrcnn_biformer_t.py',
                           '64'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'asked for 64 GPUs' in proc.stderr and 'Traceback' not in proc.stderr
    proc = subprocess.run(['bash', 'tools/dist_train.sh', 'configs/det/nope.py', '1'],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and 'config file not found' in proc.stderr


def test_test_progress_bar_counts_batches():
    """Batches done and the ETA; the bar's line ends before each line mmengine's logger
    prints (every ``interval`` batches) and after the last batch, before the evaluators
    log ('Evaluating bbox...' ran into it); no bar when every batch is logged anyway."""
    import io
    from types import SimpleNamespace

    from mmbiformer.engine import TestProgressHook

    class LoggerHook:
        def __init__(self, interval):
            self.interval = interval

    for interval, lines in ((2, 2), (1, 0)):
        out = io.StringIO()
        hook = TestProgressHook(file=out)
        runner = SimpleNamespace(test_dataloader=[0] * 3, hooks=[LoggerHook(interval)])
        hook.before_test_epoch(runner)
        for i in range(3):
            hook.after_test_iter(runner, i)
        # The evaluators log before after_test_epoch: the bar's line has ended by then.
        assert out.getvalue().endswith('\n') == bool(lines), out.getvalue()
        hook.after_test_epoch(runner)
        text = out.getvalue()
        assert text.count('\n') == lines, text  # after batch 2 and after the last
        assert ('3/3' in text and 'ETA' in text) == bool(lines), text
