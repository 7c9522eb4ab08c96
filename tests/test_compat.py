"""The stack fixes applied by ``import mmbiformer.openmmlab``."""
import torch

import mmbiformer.openmmlab  # noqa: F401


def test_runner_checkpoint_loads_safely(tmp_path):
    """What mmengine's Runner saves (message hub with HistoryBuffers, numpy values)
    loads with weights_only=True."""
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('compat-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', np.float64(1.25))
    hub.update_info('iter', 7)
    ckpt = {'meta': {'epoch': 1, 'iter': 7, 'seed': np.int64(3),
                     'message_hub': hub.state_dict()},
            'state_dict': {'w': torch.ones(2)}}
    torch.save(ckpt, tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)
    buf = loaded['meta']['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == 1.375 and buf.current() == 1.25


def test_allow_list_opens_no_path_to_a_callable(tmp_path, monkeypatch):
    """The types we allow in safe loads must not carry a callable in: a Namespace
    holding ``os.system``, and a HistoryBuffer whose state holds a function (pickled as
    ``getattr(HistoryBuffer, 'min')``: getattr would reach anything), are both refused.
    Widening the allow-list to make either load fails this test."""
    import argparse
    import os
    import pickle

    import pytest
    from mmengine.logging import HistoryBuffer
    torch.save({'args': argparse.Namespace(run=os.system)}, tmp_path / 'ns.pth')
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(tmp_path / 'ns.pth', weights_only=True)
    buffer = HistoryBuffer()
    buffer.update(1.0)
    torch.save({'b': buffer}, tmp_path / 'ours.pth')  # our __getstate__: loads
    assert torch.load(tmp_path / 'ours.pth', weights_only=True)['b'].current() == 1.0
    monkeypatch.delattr(HistoryBuffer, '__getstate__')  # plain pickling of the state,
    buffer._statistics_methods = {'min': HistoryBuffer.min}  # holding a function
    torch.save({'b': buffer}, tmp_path / 'theirs.pth')
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(tmp_path / 'theirs.pth', weights_only=True)


def test_mmcv_is_not_patched():
    """mmcv's half-precision gaps are fixed by components the configs name, not by
    patching mmcv for every user of the process."""
    from mmcv.ops import RoIAlign
    from mmcv.ops.focal_loss import SigmoidFocalLossFunction
    assert RoIAlign.forward.__module__.startswith('mmcv')
    assert SigmoidFocalLossFunction.forward.__module__.startswith('mmcv')


def test_each_applied_fix_logged_once(monkeypatch):
    from mmbiformer import compat
    logged = []
    monkeypatch.setattr(compat, '_LOGGED', set())
    monkeypatch.setattr('mmengine.logging.print_log',
                        lambda msg, **kw: logged.append((msg, kw.get('level'))))
    compat.apply()
    compat.apply()
    assert logged and all(level == 10 for _, level in logged)  # DEBUG
    assert len(logged) == len({m for m, _ in logged})
    assert any('HistoryBuffer' in m for m, _ in logged)


def test_tools_start_without_the_pkg_resources_warning():
    """setuptools warns on every `import pkg_resources` (mmengine imports it in several
    modules); importing mmbiformer.openmmlab first, as the tools do, silences exactly that
    warning, no other."""
    from helpers import run_python
    code = ('import warnings, mmbiformer.openmmlab\n'
            'from mmbiformer.utils.launch import load_config\n'
            "load_config('configs/det/retinanet_biformer_t.py')  # mmdet:: bases\n"
            "warnings.warn('another warning')\n")
    proc = run_python('-c', code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'pkg_resources is deprecated' not in proc.stderr
    assert 'another warning' in proc.stderr
