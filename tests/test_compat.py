"""The stack fixes applied on ``import mmbiformer``."""
import torch

import mmbiformer  # noqa: F401


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


def test_foreign_callables_still_refused(tmp_path):
    import os
    import pickle
    import pytest
    torch.save({'x': os.system}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'evil.pth', weights_only=True)


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
    modules); importing mmbiformer first silences exactly that warning, no other."""
    import subprocess
    import sys
    from conftest import ROOT
    code = ('import warnings, mmbiformer\n'
            'from mmbiformer.utils.launch import load_config\n'
            "load_config('configs/det/retinanet_biformer_t.py')  # mmdet:: bases\n"
            "warnings.warn('another warning')\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'pkg_resources is deprecated' not in proc.stderr
    assert 'another warning' in proc.stderr
