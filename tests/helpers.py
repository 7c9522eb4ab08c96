"""Helpers the tests share: the repository's paths, tiny models, running the tools."""
import importlib
import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.registry import DefaultScope, init_default_scope

# The repository root: configs/ and tools/ are read from here.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
# A BiFormer small enough for CPU tests: one block per stage, narrow, 8-wide heads.
TINY_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128], topks=[1, 2, 4, -2],
                 head_dim=8, mlp_ratio=2)


def run_in_process(*args) -> None:
    """The tool ``args[0]`` (a path under the repository) with arguments ``args[1:]``,
    run as ``__main__`` in this process: its imports are already loaded, so it takes
    seconds where a new process takes ten (the suite's time budget)."""
    import runpy
    argv, sys.argv = sys.argv, [str(a) for a in args]
    try:
        runpy.run_path(os.path.join(ROOT, args[0]), run_name='__main__')
    finally:
        sys.argv = argv


def tool_error(*args) -> str:
    """:func:`run_in_process` for a run that must end as the tools end on a user error:
    ``sys.exit('error: ...')`` (an exception the tool does not catch, which a user would
    see as a traceback, fails the test). Returns the message."""
    with pytest.raises(SystemExit) as e:
        run_in_process(*args)
    message = str(e.value.code)
    assert message.startswith('error: '), message
    return message


# The BRA plug-in configs (a BiFormer-free detector with BRA in its neck / backbone).
PLUGIN_CONFIGS = [os.path.join(ROOT, 'configs/det', name) for name in
                  ('rtmdet_bra_s.py', 'maskrcnn_r50_bra.py')]
# Configs kept under their old names: one line, ``_base_`` the new name.
ALIAS_CONFIGS = {os.path.join(ROOT, 'configs/det', old): new for old, new in (
    ('rtmdet-s_bra_coco.py', 'rtmdet_bra_s.py'),
    ('maskrcnn_r50-bra_fpn_1x_coco.py', 'maskrcnn_r50_bra.py'))}


def run_python(*args, **kwargs) -> subprocess.CompletedProcess:
    """This interpreter in a new process with ``args`` (``'-c', code`` or a script),
    run from the repository root unless ``cwd`` says otherwise; output captured as
    text."""
    kwargs.setdefault('cwd', ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          **kwargs)


def run_tool(*args, check=True):
    """A tool in a new process (args[0] relative to the root): (exit code, output)."""
    proc = run_python(*args)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f'{args[0]} failed ({proc.returncode}):\n{out[-4000:]}')
    return proc.returncode, out


def tool_metrics(output: str) -> dict:
    """The metrics a tool printed (its last ``metrics: {...}`` line)."""
    line = [ln for ln in output.splitlines() if ln.startswith('metrics: ')][-1]
    return json.loads(line[len('metrics: '):])


def build_model(cfg):
    """The model of config ``cfg`` built in its toolbox's scope (as the Runner does)."""
    scope = cfg.default_scope
    if cfg.get('data_preprocessor'):  # as mmengine's Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)


def train_step_loss(model, scope, masks=True):
    """The loss of a training step on a generated batch; ``masks=False``: detection
    ground truth of boxes only (detectors without a mask head)."""
    torch.manual_seed(0)
    if scope == 'mmpretrain':
        from mmpretrain.structures import DataSample
        batch = {'inputs': [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
                 'data_samples': [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]}
    elif scope == 'mmdet':
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        from mmdet.structures.mask import BitmapMasks
        sample = DetDataSample(metainfo=dict(img_shape=(70, 90), ori_shape=(70, 90),
                                             pad_shape=(70, 90), scale_factor=(1., 1.)))
        mask = torch.zeros(1, 70, 90, dtype=torch.uint8)
        mask[0, 10:40, 20:60] = 1
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[20., 10., 60., 40.]]),
                                           labels=torch.tensor([2]))
        if masks:
            sample.gt_instances.masks = BitmapMasks(mask.numpy(), 70, 90)
        batch = {'inputs': [torch.randint(0, 255, (3, 70, 90), dtype=torch.uint8)],
                 'data_samples': [sample]}
    else:
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                             pad_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64)))
        # Two images: UperNet's pooling module has 1x1 BatchNorm inputs.
        batch = {'inputs': [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
                 'data_samples': [sample, sample.clone()]}
    data = model.data_preprocessor(batch, training=True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    return loss
