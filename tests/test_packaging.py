"""A built wheel works outside the checkout: model-zoo names and configs resolve from
the installed package (``mmbiformer/.mim/``)."""
import glob
import os
import os.path as osp
import subprocess
import sys

from helpers import ROOT, run_python

CHECK = '''
import os.path as osp, sys
import mmbiformer
from mmbiformer.weights import model_zoo
site = sys.argv[1]
assert mmbiformer.__file__.startswith(site), mmbiformer.__file__
assert model_zoo.data_root().startswith(site), model_zoo.data_root()
model = model_zoo.find_model('biformer-s_in1k')
config = model_zoo.config_file('det/maskrcnn_biformer_s.py')
assert osp.isfile(config) and config.startswith(site), config
from mmengine.config import Config
cfg = Config.fromfile(config)
print('ok', model['Name'], cfg.model.backbone.type)
# MMBIFORMER_MIRROR: a folder holding <name>.pth, for an official-layout model (the
# ImageNet weights, converted on arrival) and one in our layout (a detector).
import torch
state = torch.load(model_zoo.fetch('biformer-t_in1k', progress=False),
                   weights_only=True)['state_dict']
assert torch.equal(state['backbone.downsample_layers.0.0.weight'], torch.ones(2, 3, 3, 3))
assert torch.equal(state['head.fc.weight'], torch.ones(2, 2))
state = torch.load(model_zoo.fetch('retinanet_biformer-s_coco', progress=False),
                   weights_only=True)['state_dict']
assert torch.equal(state['backbone.norm.weight'], torch.ones(4))
print('mirror ok')
'''


def test_wheel_resolves_names_and_configs_outside_the_checkout(tmp_path):
    wheels, site = tmp_path / 'wheels', tmp_path / 'site'
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-w', str(wheels),
                          ROOT], check=True, capture_output=True)
    wheel, = glob.glob(str(wheels / 'mmbiformer-*.whl'))
    subprocess.run(pip + ['install', '--no-deps', '--target', str(site), wheel], check=True,
                   capture_output=True)
    assert osp.isfile(site / 'mmbiformer' / '.mim' / 'model-index.yml')
    import torch
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    torch.save({'model': {'downsample_layers.0.0.weight': torch.ones(2, 3, 3, 3),
                          'head.weight': torch.ones(2, 2)}}, mirror / 'biformer-t_in1k.pth')
    torch.save({'state_dict': {'backbone.norm.weight': torch.ones(4)}},
               mirror / 'retinanet_biformer-s_coco.pth')
    env = dict(os.environ, PYTHONPATH=str(site), MMBIFORMER_MIRROR=str(mirror),
               MMBIFORMER_HOME=str(tmp_path / 'home'))
    proc = run_python('-c', CHECK, str(site), cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert 'ok biformer-s_in1k BiFormer' in proc.stdout and 'mirror ok' in proc.stdout


def test_config_file_names_close_configs():
    import pytest

    from mmbiformer.weights.model_zoo import config_file
    assert config_file('configs/seg/upernet_biformer_s.py').endswith('upernet_biformer_s.py')
    with pytest.raises(FileNotFoundError, match='did you mean: det/maskrcnn_biformer_s.py'):
        config_file('det/maskrcnn_biformer_ss.py')


def test_register_all_modules_whatever_was_imported_first():
    """``import mmbiformer`` before mmengine and the toolboxes: the backbone builds from
    mmdet's and mmpretrain's registries all the same (registered once a toolbox's
    registry has loaded; mmpretrain through the torchvision stand-in where torchvision
    is missing), and ``register_all_modules()`` afterwards changes nothing."""
    code = ('import sys, mmbiformer\n'
            "assert 'mmengine' not in sys.modules\n"
            'from mmdet.registry import MODELS as DET\n'
            'from mmpretrain.registry import MODELS as CLS\n'
            "for r in (DET, CLS):\n"
            "    print(type(r.build(dict(type='BiFormer', arch='tiny'))).__name__)\n"
            'mmbiformer.register_all_modules()\n'
            "print(type(DET.build(dict(type='BiFormer', arch='tiny'))).__name__)\n")
    out = run_python('-c', code)
    assert out.returncode == 0 and out.stdout.split() == ['BiFormer'] * 3, out.stderr[-2000:]


def test_a_tool_of_another_clone_says_which_package_it_runs(tmp_path, monkeypatch):
    """A second clone's tools/setup.sh re-points the editable install: a tool of the
    first clone then imports the second's package, and says so."""
    import mmengine.logging

    from mmbiformer import openmmlab
    (tmp_path / 'mmbiformer').mkdir()
    (tmp_path / 'mmbiformer' / '__init__.py').write_text('')
    (tmp_path / 'tools').mkdir()
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: said.append(msg))
    monkeypatch.setattr(sys, 'argv', [str(tmp_path / 'tools' / 'train.py')])
    openmmlab._check_checkout()
    assert len(said) == 1 and f'not the one beside it in {tmp_path}' in said[0]
    monkeypatch.setattr(sys, 'argv', [osp.join(ROOT, 'tools', 'train.py')])  # its own
    openmmlab._check_checkout()
    assert len(said) == 1


def test_one_import_registers_what_the_configs_name():
    """``mmbiformer.openmmlab`` alone (a config that derives from ours and sets its own
    ``custom_imports``): the toolbox components of ``mmbiformer.models.cls`` / ``.det``
    build from mmpretrain's and mmdet's registries (imported at their first look-up)."""
    code = ('import mmbiformer.openmmlab\n'
            'from mmpretrain.registry import BATCH_AUGMENTS, MODELS\n'
            'from mmdet.registry import MODELS as DET\n'
            "print(MODELS.get('SyncFreeClsDataPreprocessor').__name__, "
            "BATCH_AUGMENTS.get('DeviceCutMix').__name__, DET.get('FP32FocalLoss').__name__)\n")
    out = run_python('-c', code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['SyncFreeClsDataPreprocessor', 'DeviceCutMix',
                                  'FP32FocalLoss'], out.stdout
