"""FLOPs counting: the paper's table, and agreement with mmengine's operator counter."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.analysis import FlopAnalyzer

from mmbiformer.models import BiFormer
from mmbiformer.analysis.flops import count_macs
from helpers import ROOT



@pytest.mark.parametrize('arch,paper_gflops', [('tiny', 2.2), ('small', 4.5), ('base', 9.8)])
def test_paper_flops_at_224(arch, paper_gflops):
    """The paper's FLOPs are attention-inclusive multiply-adds of the classifier."""
    model = BiFormer(arch, n_win=7, out_indices=(3, ), out_norm='batchnorm').eval()
    macs = count_macs(model, torch.randn(1, 3, 224, 224))
    total = sum(macs.values()) + model.embed_dims[-1] * 1000  # + linear head
    assert round(total / 1e9, 1) == paper_gflops
    assert macs['attention'] > 0 and macs['routing'] > 0


def test_agrees_with_operator_counter():
    """Conv and linear MACs equal mmengine's FlopAnalyzer; its matmul count (reference
    path: routing and token attention as ``@``) equals ours less the global attention
    of stage 4, which runs in ``scaled_dot_product_attention`` and is invisible to it."""
    model = BiFormer('tiny', n_win=7, attn_impl='reference').eval()
    x = torch.randn(1, 3, 224, 224)
    ours = count_macs(model, x)
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    traced = analyzer.by_operator()
    assert ours['conv'] == traced['conv']
    assert ours['linear'] == traced['linear']
    tokens, dim, blocks = 7 * 7, 512, 2  # stage 4 of tiny
    global_attention = blocks * tokens**2 * 2 * dim
    assert ours['routing'] + ours['attention'] - global_attention == traced['matmul']


def test_kv_downsampling_reduces_attention():
    arch = dict(depths=[1, 1, 1, 1], embed_dims=[32, 64, 64, 64], topks=[2, 2, 2, -2],
                head_dim=32, mlp_ratio=2)
    full = count_macs(BiFormer(arch, n_win=4).eval(), torch.randn(1, 3, 128, 128))
    pooled = count_macs(BiFormer(dict(arch, kv_downsample_mode='ada_avgpool', kv_per_wins=1),
                                 n_win=4).eval(), torch.randn(1, 3, 128, 128))
    assert pooled['attention'] < full['attention']
    assert pooled['linear'] == full['linear']


def _get_flops(*args):
    return subprocess.run([sys.executable, 'tools/get_flops.py', *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_get_flops_tool():
    proc = _get_flops('configs/cls/biformer_t_in1k.py')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'whole model' in proc.stdout and 'params 13.14 M' in proc.stdout
    assert 'FLOPs 2.216 G' in proc.stdout
    proc = _get_flops('configs/cls/biformer_t_in1k.py', '--arch', 'tiny')
    assert proc.returncode == 2 and 'not both' in proc.stderr
    proc = _get_flops('configs/cls/biformer_x.py')
    assert proc.returncode == 1 and 'config file not found' in proc.stderr


def test_get_flops_default_input_follows_the_toolbox():
    """Detection at mmdet's 1280x800, segmentation at its training crop, classification
    at 224x224, unless --shape says otherwise."""
    import importlib.util

    from mmbiformer.utils.launch import load_config
    spec = importlib.util.spec_from_file_location('get_flops',
                                                  osp.join(ROOT, 'tools/get_flops.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    shapes = {c: tool.default_shape(load_config(osp.join(ROOT, 'configs', c)))
              for c in ('det/retinanet_biformer_s.py', 'seg/upernet_biformer_s.py',
                        'cls/biformer_s_in1k.py')}
    assert shapes == {'det/retinanet_biformer_s.py': (1280, 800),
                      'seg/upernet_biformer_s.py': (512, 512),
                      'cls/biformer_s_in1k.py': (224, 224)}
