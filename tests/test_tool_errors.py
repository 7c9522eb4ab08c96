"""User errors in the tools end in one clear message, never a traceback (CPU)."""
import os
import os.path as osp
import re
import zipfile

import pytest
import torch
from torch import nn

from mmbiformer.weights.checkpoint import CheckpointError, safe_load
from mmbiformer.testing import MAKERS
from mmbiformer.utils.short_run import as_cli, short_run_options
from helpers import ROOT, run_in_process, run_tool, tool_error

CONFIG = 'configs/det/retinanet_biformer_t.py'
SIZE = (64, 96)


def _corrupt_files(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': nn.Linear(4, 2).state_dict()}, good)
    files = {'empty': b'', 'random bytes': bytes(range(256)) * 4,
             'text': b'hello, not a checkpoint\n',
             'truncated zip': good.read_bytes()[:len(good.read_bytes()) // 2]}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / (name.replace(' ', '_') + '.pth')
        paths[name].write_bytes(data)
    return paths


def test_every_corrupt_file_is_a_checkpoint_error(tmp_path):
    for name, path in _corrupt_files(tmp_path).items():
        with pytest.raises(CheckpointError, match='corrupt or not a PyTorch checkpoint') as e:
            safe_load(str(path))
        # No advice to load a file of unknown origin unsafely; no download for a file
        # that came from no download: the intact checkpoint beside it instead.
        assert 'weights_only' not in str(e.value) and 'download' not in str(e.value)
        assert f'The newest intact checkpoint beside it is {tmp_path / "good.pth"}' in str(
            e.value)
        assert '--resume' not in str(e.value)  # read by test and demo too
    assert zipfile.is_zipfile(tmp_path / 'good.pth')


def test_a_corrupt_model_zoo_file_is_downloaded_anew(tmp_path, monkeypatch):
    from mmbiformer.weights.model_zoo import cache_dir
    monkeypatch.setenv('MMBIFORMER_HOME', str(tmp_path))
    os.makedirs(cache_dir())
    path = os.path.join(cache_dir(), 'biformer-t_in1k.pth')
    with open(path, 'wb') as f:
        f.write(b'')
    with pytest.raises(CheckpointError, match='model-zoo download: delete it and run the '
                       'command again to download it anew'):
        safe_load(path)
    other = tmp_path / 'alone' / 'epoch_3.pth'
    other.parent.mkdir()
    other.write_bytes(b'')
    with pytest.raises(CheckpointError, match='Replace it with an intact copy'):
        safe_load(str(other))


@pytest.fixture(scope='module')
def opts(tmp_path_factory):
    coco = MAKERS['coco'](str(tmp_path_factory.mktemp('coco')), num_train=1, num_val=1,
                          size=SIZE)
    return ['--cfg-options', *as_cli(short_run_options('retinanet', coco, SIZE, 1))]


def _fails_cleanly(args, *expected, subprocess=False):
    """The tool ``args[0]`` run as ``__main__`` ends with one ``error: ...`` line: in
    this process (as its ``__main__`` block runs: an exception it does not catch would
    fail the test), or with ``subprocess`` as a user runs it (no traceback printed)."""
    if subprocess:
        code, out = run_tool(*args, check=False)
        assert code != 0 and 'Traceback' not in out, out[-3000:]
    else:
        out = tool_error(*args)
    for text in expected:
        assert text in out, out[-3000:]


def test_test_tool_checkpoint_errors(opts, tmp_path):
    bad = _corrupt_files(tmp_path)['truncated zip']
    work = ['--work-dir', str(tmp_path / 'w')]  # nothing written into the checkout
    _fails_cleanly(['tools/test.py', CONFIG, str(bad), *work, *opts], f'{bad}: is corrupt',
                   subprocess=True)
    _fails_cleanly(['tools/test.py', CONFIG, 'biformer-s_in1kk', *work, *opts],
                   "unknown model name 'biformer-s_in1kk'", 'Did you mean: biformer-s_in1k')
    _fails_cleanly(['tools/test.py', CONFIG, 'http://127.0.0.1:9/x/model.pth', *work,
                    *opts], 'download failed')


def test_test_tool_checks_out_before_the_test_epoch(opts, tmp_path):
    ckpt = tmp_path / 'w.pth'
    torch.save({'state_dict': {}}, ckpt)
    (tmp_path / 'a_file').write_text('')
    for out, expected in ((tmp_path, 'is a folder'),
                          (tmp_path / 'a_file' / 'p.pkl',
                           f'{tmp_path / "a_file"} is a file, not a folder'),
                          (tmp_path / 'p.json', 'ending in .pkl')):
        _fails_cleanly(['tools/test.py', CONFIG, str(ckpt), '--out', str(out), *opts],
                       f'--out {out}', expected)


def test_resume_checkpoint_errors(opts, tmp_path):
    work = ['--work-dir', str(tmp_path / 'w')]
    empty = _corrupt_files(tmp_path)['empty']
    _fails_cleanly(['tools/train.py', CONFIG, '--resume', str(empty), *work, *opts],
                   f'{empty}: is corrupt')
    _fails_cleanly(['tools/train.py', CONFIG, '--resume', str(tmp_path / 'good.pth'),
                    *work, *opts], 'not a training checkpoint', 'load_from=')


def test_demo_and_load_from_checkpoint_errors(opts, tmp_path):
    import glob
    bad = _corrupt_files(tmp_path)['random bytes']
    root = [o for o in opts if o.startswith('train_dataloader.dataset.data_root=')][0]
    image = sorted(glob.glob(osp.join(root.split('=', 1)[1], 'val2017', '*.jpg')))[0]
    _fails_cleanly(['tools/demo.py', CONFIG, str(bad), image, '--device', 'cpu',
                    '--out', str(tmp_path / 'o.jpg'), *opts], f'{bad}: is corrupt')
    _fails_cleanly(['tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'), *opts,
                    f'load_from={bad}'], f'{bad}: is corrupt')


def test_start_weights_that_do_not_fit_are_refused(opts, tmp_path):
    """load_from (a fine-tune's start) and --resume with a checkpoint of one block
    fewer, and --resume with one block more: refused before training, naming the fix."""
    from mmbiformer.utils.launch import load_config
    from helpers import build_model
    cfg = load_config(CONFIG)
    cfg.model.backbone.init_cfg = None
    state = {k: v for k, v in build_model(cfg).state_dict().items()
             if not k.startswith('backbone.stages.2.1.')}  # one block fewer
    path = str(tmp_path / 'fewer.pth')
    torch.save({'state_dict': state, 'meta': {}}, path)
    work = ['--work-dir', str(tmp_path / 'w')]
    _fails_cleanly(['tools/train.py', CONFIG, *work, *opts, f'load_from={path}'],
                   f'{path} does not fit this model', 'fewer blocks',
                   'pass --allow-partial')
    # The same weights as a training checkpoint to --resume: not the optimizer's
    # traceback, the model's mismatch.
    torch.save({'state_dict': state, 'meta': {'epoch': 1, 'iter': 2}}, path)
    _fails_cleanly(['tools/train.py', CONFIG, *work, '--resume', path, *opts],
                   f'{path} does not fit this model', 'fewer blocks',
                   'Resume with the config this run was trained with')
    # One block more (a bigger arch's run): the model's sizes, not the optimizer's
    # "a parameter group that doesn't match the size of optimizer's group".
    full = build_model(cfg).state_dict()
    more = dict(full, **{k.replace('stages.2.7.', 'stages.2.8.'): v for k, v in full.items()
                         if k.startswith('backbone.stages.2.7.')})
    torch.save({'state_dict': more, 'meta': {'epoch': 1, 'iter': 2}}, path)
    _fails_cleanly(['tools/train.py', CONFIG, *work, '--resume', path, *opts],
                   'bigger model than this config builds: it holds [2, 2, 9, 2] blocks per '
                   'stage, this model [2, 2, 8, 2]',
                   'Resume with the config this run was trained with')
    assert not osp.exists(tmp_path / 'w' / 'epoch_1.pth')


def test_init_cfg_checkpoint_error_without_traceback(opts, tmp_path):
    bad = _corrupt_files(tmp_path)['text']
    # The config's own init_cfg (Pretrained) pointed at a corrupt file.
    keep = [o for o in opts if not o.startswith('model.backbone.init_cfg=')]
    _fails_cleanly(['tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'), *keep,
                    f'model.backbone.init_cfg.checkpoint={bad}'], f'{bad}: is corrupt')


@pytest.mark.parametrize('option,expected', [
    ('param_scheduler.5.end=3', 'cannot set param_scheduler.5.end: Index 5 exceeds'),
    ("custom_hooks=['EMAHook']", 'custom_hooks must be a list of hook dicts'),
    ('custom_hooks.0.momentum=1e-3',
     "BackboneRuntimeHook.__init__() got an unexpected keyword argument 'momentum'"),
    ('custom_hooks.0.cuda_graph=yes',
     "cuda_graph must be a bool or a dict with keys ['inference_graphs', 'max_graphs'"),
    ('train_cfg.max_epochs=-1', 'train_cfg.max_epochs must be an integer >= 1, got -1'),
    ('train_dataloader.batch_size=0', 'train_dataloader.batch_size must be an integer >= 1'),
    ('model.backbone.arch=huge', "arch must be one of ['base', 'small', 'tiny']"),
    ('model.backbone.n_win=0', 'n_win must be an int >= 1, got 0'),
    ("custom_hooks=[dict(type='EMAHook',momentum='abc')]",
     "the run could not start: '<' not supported"),
    ('model.neck.type=FPNX', 'the config could not be built: FPNX is not in the'),
    ('optim_wrapper.optimizer.lr=1e-3)',
     r"--cfg-options optim_wrapper.optimizer.lr=1e-3): not a number (the config has 0.0001"),
])
def test_bad_option_values_are_one_line(option, expected, opts, tmp_path):
    """A bad value given with --cfg-options ends in one line naming it, before any
    training (no traceback from mmengine's merge, loop, loader or registry)."""
    _fails_cleanly(['tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'), *opts,
                    option], expected)
    assert not osp.exists(tmp_path / 'w' / 'epoch_1.pth')


def test_launcher_without_torchrun(opts, tmp_path):
    _fails_cleanly(['tools/train.py', CONFIG, '--launcher', 'pytorch', '--work-dir',
                    str(tmp_path), *opts], 'tools/dist_train.sh', 'torchrun')
    assert not osp.exists(tmp_path / 'last_checkpoint')


def test_every_path_is_checked_before_training(tmp_path):
    import shutil
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=1, num_val=1, size=SIZE)
    base = as_cli(short_run_options('retinanet', coco, SIZE, 1))
    # Following the hint for the loaders' data_root alone: the evaluator is named next.
    roots = [o for o in base if '_evaluator.ann_file' not in o]
    _fails_cleanly(['tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', *roots],
                   'val_evaluator.ann_file', 'data/coco/annotations/instances_val2017.json')
    # A missing image folder stops training before its first iteration.
    shutil.rmtree(osp.join(coco, 'val2017'))
    _fails_cleanly(['tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', *base], 'val2017',
                   'val_dataloader.dataset.data_prefix.img')
    assert not osp.exists(tmp_path / 'w' / 'epoch_1.pth')


@pytest.mark.parametrize('content,message', [
    ('{"images": [', 'not valid JSON'),
    ('[1, 2]', 'got a list'),
    ('{"images": [{"id": 1}], "annotations": []}', 'no categories list'),
    ('{"images": [], "annotations": [], "categories": [{"id": 1}]}', 'zero images'),
])
def test_bad_coco_annotation_files(content, message, tmp_path):
    from mmbiformer.errors import UserError
    from mmbiformer.utils.data_checks import check_coco_annotations
    path = tmp_path / 'instances.json'
    path.write_text(content)
    with pytest.raises(UserError, match=message) as e:
        check_coco_annotations(str(path), 'val_evaluator.ann_file')
    assert str(path) in str(e.value) and 'val_evaluator.ann_file' in str(e.value)


def _broken(coco, split, change):
    """The COCO file of ``split`` with ``change(data)`` applied."""
    import json
    path = osp.join(coco, 'annotations', f'instances_{split}.json')
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


@pytest.mark.parametrize('change,message,fatal', [
    (lambda d: d['annotations'][0].pop('bbox'), "1 annotations without a 'bbox' (ids 1)", True),
    (lambda d: d['annotations'][0].update(bbox='1,2,3,4'), "'bbox' is not 4 numbers", True),
    (lambda d: d['images'][0].update(file_name='gone.jpg'), 'images whose file is missing',
     True),
    (lambda d: d['annotations'][0]['bbox'].__setitem__(2, -3.0),
     '1 annotations whose box has no positive width and height (ids 1)', False),
    (lambda d: d['annotations'][0].update(category_id=999),
     'category_id is not among the categories', False),
    (lambda d: d['annotations'][0].update(image_id=-7), 'image_id names no image', False),
    (lambda d: d['annotations'][0]['bbox'].__setitem__(0, 1e4),
     '1 annotations whose box lies outside its image (ids 1)', False),
    # Every box dropped: training on background only (loss_bbox 0, exit 0) is refused.
    (lambda d: [a['bbox'].__setitem__(2, -1.0) for a in d['annotations']],
     'no usable box: each of its boxes is skipped or outside its image', True),
    (lambda d: [a['bbox'].__setitem__(1, -1e4) for a in d['annotations']],
     'no usable box', True),
])
def test_coco_records_are_checked(change, message, fatal, tmp_path, monkeypatch):
    """Each broken record kind: a fatal one stops with its count and ids, one the
    loader would skip silently is warned of, before anything runs."""
    import mmengine.logging

    from mmbiformer.errors import UserError
    from mmbiformer.utils.data_checks import check_data
    from mmbiformer.utils.launch import load_config
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=2, num_val=1, size=SIZE)
    path = _broken(coco, 'train2017', change)
    cfg = load_config(CONFIG, dict(short_run_options('retinanet', coco, SIZE, 1)))
    warned = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, **kw: warned.append(msg))
    if fatal:
        with pytest.raises(UserError, match=re.escape(message)) as e:
            check_data(cfg, ['train_dataloader'])
        assert f'{path} (read through train_dataloader.dataset.ann_file)' in str(e.value)
    else:
        check_data(cfg, ['train_dataloader'])
        assert any(message in w and 'the loader skips' in w for w in warned), warned


def test_bad_annotation_file_through_the_tool(tmp_path):
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=1, num_val=1, size=SIZE)
    ann = osp.join(coco, 'annotations', 'instances_train2017.json')
    with open(ann, 'w') as f:
        f.write('{"images": [], "annotations": [], "categories": []}')
    _fails_cleanly(['tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', *as_cli(short_run_options('retinanet', coco, SIZE, 1))],
                   f'{ann} (read through train_dataloader.dataset.ann_file): holds zero images')


def test_seg_demo_small_and_large_images(tmp_path, capsys):
    """Above --max-side the image is resized first (full-size class scores of a
    5000x5000 image needed 15 GB); a result with a side under 32 pixels is drawn
    without mmseg's visualiser (it failed on tiny images: IndexError at 1x1)."""
    import cv2
    import numpy as np
    from mmengine.config import Config
    from mmseg.apis import init_model
    seg_config = 'configs/seg/upernet_biformer_t.py'
    ade = MAKERS['ade20k'](str(tmp_path / 'ade'), num_train=1, num_val=1, size=(64, 64))
    options = short_run_options('seg', ade, (64, 64), 1)
    cfg = Config.fromfile(seg_config)
    cfg.merge_from_dict(options)
    ckpt, image, out = (str(tmp_path / n) for n in ('seg.pth', 'wide.png', 'out.png'))
    torch.save({'state_dict': init_model(cfg, None, device='cpu').state_dict()}, ckpt)
    cv2.imwrite(image, np.full((40, 100, 3), 128, np.uint8))
    run_in_process('tools/demo.py', seg_config, ckpt, image, '--device', 'cpu', '--out', out,
                   '--max-side', '10', '--cfg-options', *as_cli(options))
    text = capsys.readouterr().out
    assert '100x40 resized to 10x4 (--max-side 10' in text and 'overlaid on' in text, text
    assert cv2.imread(out).shape == (4, 10, 3)


def test_cfg_options_take_python_values(capsys):
    """mmengine's DictAction keeps ``dict(...)`` inside a list as a string (the runner
    then fails with ``'str' object has no attribute 'get'``) and recurses without end
    on ``[dict(a=1, b=2)]``; the tools read such values as Python literals."""
    import argparse

    from mmbiformer.utils.launch import load_config, parse_tool_args
    args = parse_tool_args(argparse.ArgumentParser(), [
        '--cfg-options', "custom_hooks=[dict(type='EMAHook', momentum=1e-4)]",
        "param_scheduler=[dict(type='LinearLR', start_factor=0.1, end=2)]",
        'train_dataloader.batch_size=3', 'default_hooks.logger.interval=1,2'])
    cfg = load_config('configs/cls/biformer_t_in1k.py', args.cfg_options)
    assert cfg.custom_hooks == [dict(type='EMAHook', momentum=1e-4)]
    assert cfg.param_scheduler == [dict(type='LinearLR', start_factor=0.1, end=2)]
    assert cfg.train_dataloader.batch_size == 3  # mmengine's own readings stay
    assert cfg.default_hooks.logger.interval == [1, 2]
    with pytest.raises(SystemExit):
        parse_tool_args(argparse.ArgumentParser(), ['--cfg-options', 'x=[open(1)]'])
    assert 'open(1) is not a literal' in capsys.readouterr().err


def test_dist_timeout_default_and_check():
    from mmengine.config import Config

    from mmbiformer.engine.stalled_rank import DEFAULT_TIMEOUT_S
    from mmbiformer.errors import UserError
    from mmbiformer.utils.distributed import dist_timeout
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert dist_timeout(cfg) == DEFAULT_TIMEOUT_S == cfg.env_cfg.dist_cfg.timeout
    assert dist_timeout(Config(dict(env_cfg=dict(dist_cfg=dict(timeout=30))))) == 30
    with pytest.raises(UserError, match='must be a number of seconds > 0'):
        dist_timeout(Config(dict(env_cfg=dict(dist_cfg=dict(timeout='5m')))))


def test_class_labels_beyond_the_head_are_named(tmp_path):
    """model.head.num_classes=2 on 4-class ImageNet-style data: the list, its count and
    first lines, before anything runs (not the loss's "Class values must be smaller
    than num_classes" mid-training); the data's own 4 classes pass."""
    from mmbiformer.errors import UserError
    from mmbiformer.utils.data_checks import check_data
    from mmbiformer.utils.launch import load_config
    root = MAKERS['imagenet'](str(tmp_path / 'in'), num_train=1, num_val=1, size=(32, 32))
    options = dict(short_run_options('cls', root, (32, 32), 1))
    check_data(load_config('configs/cls/biformer_t_in1k.py', options), ['train_dataloader'])
    cfg = load_config('configs/cls/biformer_t_in1k.py',
                      dict(options, **{'model.head.num_classes': 2}))
    with pytest.raises(UserError, match=r'train.txt \(read through train_dataloader.dataset\)'
                       r': 2 lines whose class label does not fit model.head.num_classes=2'):
        check_data(cfg, ['train_dataloader'])


def test_a_failed_dump_keeps_the_metrics(tmp_path):
    """--out's predictions cannot be written after the test epoch (the folder became a
    file): the error is kept for after the metrics, not raised in their place."""
    from mmbiformer.engine import SafeDumpResults
    out = tmp_path / 'gone' / 'preds.pkl'
    out.parent.mkdir()
    dump = SafeDumpResults(out_file_path=str(out))
    out.parent.rmdir()
    out.parent.write_text('now a file')
    assert dump.compute_metrics([{'a': 1}]) == {}
    assert dump.error.startswith(f'--out {out}: the predictions could not be written')


def test_loader_workers_fit_the_cores(monkeypatch):
    """More workers than cores (the configs' 5 on a 2-core machine): as many as cores,
    said once, instead of PyTorch's warning at every loader start. With four cores or
    more per process two are left for the main process; several processes share them."""
    import os

    import mmengine.logging
    from mmengine.config import Config

    from mmbiformer.utils.launch import fit_workers
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda m, **kw: said.append(m))
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1})
    cfg = Config(dict(train_dataloader=dict(num_workers=1),
                      test_dataloader=dict(num_workers=5)))
    fit_workers(cfg)
    assert cfg.train_dataloader.num_workers == 1 and cfg.test_dataloader.num_workers == 2
    assert said == ['test_dataloader.num_workers=5 is more than this process can keep '
                    'busy (2 cores): 2 workers']
    said.clear()
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(128)))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '8')  # 8 GPUs of a 128-core machine
    cfg = Config(dict(train_dataloader=dict(num_workers=16), val_dataloader=dict(num_workers=5)))
    fit_workers(cfg)
    assert cfg.train_dataloader.num_workers == 14 and cfg.val_dataloader.num_workers == 5
    assert said == ['train_dataloader.num_workers=16 is more than this process can keep '
                    'busy (128 cores shared by 8 processes, two left for the main '
                    'process): 14 workers']
    said.clear()  # tools/test.py fits (and mentions) only the loader it runs
    cfg = Config(dict(train_dataloader=dict(num_workers=16), test_dataloader=dict(num_workers=1)))
    fit_workers(cfg, ('test_dataloader', ))
    assert cfg.train_dataloader.num_workers == 16 and not said


@pytest.mark.parametrize('metrics, evaluators, expected', [
    ({}, dict(type='CocoMetric'), 'produced no metric'),
    ({'coco/bbox_mAP': float('nan'), 'coco/bbox_mAP_50': 0.1}, [dict(type='CocoMetric')],
     r'not numbers \(coco/bbox_mAP\)'),
    ({}, dict(type='CocoMetric', format_only=True), ''),  # a submission: none on purpose
    ({'accuracy/top1': 71.5}, dict(type='Accuracy'), '')])
def test_an_evaluation_without_metrics_fails(metrics, evaluators, expected):
    """tools/test.py ends non-zero, saying why, when the evaluation produced no metric
    or non-finite ones (a diverged checkpoint's NaN outputs gave ``metrics: {}`` and
    exit 0)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('test_tool', osp.join(ROOT, 'tools',
                                                                        'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    problem = test_tool.metrics_problem(metrics, evaluators)
    assert (re.search(expected, problem) if expected else problem == ''), problem


def test_short_run_options_usage(capsys):
    """``-h`` prints the usage and no arguments is a usage error (both crashed inside
    argparse); with arguments it prints the options."""
    with pytest.raises(SystemExit) as e:
        run_in_process('tools/short_run_options.py', '-h')
    assert e.value.code == 0
    assert 'images per GPU' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        run_in_process('tools/short_run_options.py')
    assert e.value.code == 2
    assert 'the following arguments are required: task' in capsys.readouterr().err
    run_in_process('tools/short_run_options.py', 'det', 'data/x', '64', '96', '1', '2')
    assert 'train_dataloader.dataset.data_root=data/x/' in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason='the hint is for machines without GPU')
def test_dist_launchers_hint_works_as_written(capsys):
    """dist_train.sh's pre-flight on a machine without GPU: asking for 8 processes is
    refused with a command to run instead, and that command passes the pre-flight."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('check_gpus', osp.join(ROOT, 'tools',
                                                                         'check_gpus.py'))
    check_gpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_gpus)
    config = osp.join(ROOT, 'configs/det/retinanet_biformer_t.py')
    assert check_gpus.main(config, '8') == 2
    hint = re.search(r'\(e\.g\. (tools/dist_train\.sh \S+ \d+)\)', capsys.readouterr().err)
    assert hint, 'no command in the message'
    _, config_given, count = hint.group(1).split()
    assert check_gpus.main(config_given, count) == 0


def test_ctrl_c_is_one_line_with_the_resume_command(opts, tmp_path, monkeypatch, capsys):
    """SIGINT during training (KeyboardInterrupt out of the loop): one line naming the
    newest checkpoint and the command that continues, exit 130 (was an 87-line
    traceback); before any checkpoint, that nothing was saved."""
    from mmbiformer.engine import AtomicSaveRunner

    for saved, expected in ((False, 'interrupted before the first checkpoint of'),
                            (True, 'interrupted: {work}/epoch_1.pth is the newest checkpoint; '
                                   'continue with: python tools/train.py {config} --resume '
                                   '--work-dir {work}')):
        work = tmp_path / f'saved_{saved}'

        def interrupted(self, saved=saved, work=work):
            if saved:  # as the checkpoint hook leaves epoch 1
                torch.save({'meta': {'epoch': 1, 'iter': 1}, 'state_dict': {}},
                           work / 'epoch_1.pth')
            raise KeyboardInterrupt

        monkeypatch.setattr(AtomicSaveRunner, 'train', interrupted)
        with pytest.raises(SystemExit) as e:
            run_in_process('tools/train.py', CONFIG, '--work-dir', str(work), *opts)
        assert e.value.code == 130
        err = capsys.readouterr().err.strip().splitlines()
        assert 'Traceback' not in '\n'.join(err), err
        assert err[-1].startswith(expected.format(work=work, config=CONFIG)), err[-1]


def test_metrics_print_without_float32_noise():
    """mmseg's float32 metrics print as the digits they hold (issue 60: 'aAcc':
    38.31999969482422)."""
    import importlib.util

    import numpy as np
    spec = importlib.util.spec_from_file_location('test_tool', osp.join(ROOT, 'tools',
                                                                        'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    assert test_tool._number(np.float32(38.32)) == 38.32
    assert test_tool._number(torch.tensor(0.3451, dtype=torch.float32)) == 0.3451
    assert test_tool._number(0.1234567891) == 0.1234567891  # float64: as it is
    assert test_tool._number('n/a') == 'n/a'


def test_demo_names_the_models_own_score_threshold():
    """demo.py --score-thr below the detector's own test_cfg threshold: the line says
    the model dropped the rest already, and which key lowers it (issue 60: '0
    instances with score >= 0.005 drawn', no hint)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('demo_tool', osp.join(ROOT, 'tools',
                                                                        'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo._test_score_thr(dict(score_thr=0.05, nms=dict(iou_threshold=0.5))) == (
        'test_cfg.score_thr', 0.05)
    assert demo._test_score_thr(dict(rpn=dict(), rcnn=dict(score_thr=0.05))) == (
        'test_cfg.rcnn.score_thr', 0.05)
    assert demo._test_score_thr(dict(rcnn=None))[1] is None
    assert demo._test_score_thr(None)[1] is None
