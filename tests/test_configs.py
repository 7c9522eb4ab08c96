"""Every shipped config builds, and its model runs a forward/backward step (tiny arch)."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmbiformer.openmmlab  # noqa: F401
from mmbiformer.weights.converters import convert_official_file
from official_reference import official_logits, random_official_state_dict
from helpers import ALIAS_CONFIGS, PLUGIN_CONFIGS, ROOT, build_model, train_step_loss

# Configs with BRA as a plug-in in other networks: tests/test_bra_plugin.py.
# configs/_base_/ holds what the configs share, not configs of their own.
CONFIGS = sorted(set(glob.glob(osp.join(ROOT, 'configs', '*', '*.py')) +
                     glob.glob(osp.join(ROOT, 'configs', '*', 'ablation', '*.py')))
                 - set(PLUGIN_CONFIGS) - set(ALIAS_CONFIGS)
                 - set(glob.glob(osp.join(ROOT, 'configs', '_base_', '*.py'))))
DIMS = {'tiny': [64, 128, 256, 512], 'small': [64, 128, 256, 512],
        'base': [96, 192, 384, 768]}


@pytest.mark.parametrize('alias', sorted(ALIAS_CONFIGS), ids=osp.basename)
def test_old_config_names_give_the_same_config(alias):
    new = osp.join(osp.dirname(alias), ALIAS_CONFIGS[alias])
    assert Config.fromfile(alias).to_dict() == Config.fromfile(new).to_dict()


def test_all_configs_present():
    names = {osp.relpath(p, ROOT) for p in CONFIGS}
    for arch in 'tsb':
        assert f'configs/cls/biformer_{arch}_in1k.py' in names
        for det in ('maskrcnn', 'retinanet'):
            assert f'configs/det/{det}_biformer_{arch}.py' in names
        for seg in ('upernet', 'sfpn'):
            assert f'configs/seg/{seg}_biformer_{arch}.py' in names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.basename(p))
def test_config_builds_and_steps(path):
    cfg = Config.fromfile(path)
    if cfg.get('tta'):
        pytest.skip('test-time augmentation variant of another config')
    bb = cfg.model.get('backbone', cfg.model)
    arch = bb.arch
    assert bb.type == 'BiFormer'
    # Build the real model once (real arch), check its stage dims against the neck/head.
    model = build_model(cfg)
    assert [model.backbone.embed_dims[i] for i in model.backbone.out_indices] == \
        [DIMS[arch][i] for i in bb.out_indices]
    # A forward/backward step on the same config with the tiny arch (CPU time).
    cfg.model.backbone.arch = 'tiny'
    cfg.model.backbone.init_cfg = None
    if 'quadtree' in (bb.get('attn_types') or ()):
        # 64x64 test images leave too few tokens for 4 pyramid levels (16x16 maps).
        cfg.model.backbone.attn_cfg = dict(quadtree=dict(levels=(2, 2, 2, 1), topk=4))
    tiny = [DIMS['tiny'][i] for i in bb.out_indices]
    scope = cfg.default_scope
    if scope == 'mmdet':
        cfg.model.neck.in_channels = tiny
    elif scope == 'mmseg':
        if 'neck' in cfg.model:
            cfg.model.neck.in_channels = tiny
        else:
            cfg.model.decode_head.in_channels = tiny
            cfg.model.auxiliary_head.in_channels = tiny[2]
        cfg.model.data_preprocessor.size = (64, 64)
    else:
        cfg.model.head.in_channels = tiny[-1]
    model = build_model(cfg).train()
    loss = train_step_loss(model, scope)
    loss.backward()
    assert torch.isfinite(loss)
    attn = model.backbone.stages[0][0].attn
    assert all(p.grad is not None for p in attn.parameters())


def test_converted_official_checkpoint_gives_official_logits(tmp_path):
    """Official layout -> converter -> mmpretrain get_model: same logits as the oracle."""
    from mmpretrain.apis import get_model
    official = random_official_state_dict('tiny', seed=5)
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save({'model': official, 'epoch': 299}, src)
    convert_official_file(str(src), str(dst))
    model = get_model(osp.join(ROOT, 'configs/cls/biformer_t_in1k.py'),
                      pretrained=str(dst), device='cpu').eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model(x, mode='tensor')
        ref = official_logits(official, x, 'tiny', n_win=7)
    rel = ((ours - ref).norm() / ref.norm()).item()
    assert ours.shape == (2, 1000) and rel < 1e-4, rel
    state = torch.load(dst, weights_only=True)['state_dict']
    assert set(state) == set(model.state_dict())  # nothing missing, nothing extra


def test_converter_tool_refuses_foreign_files(tmp_path):
    import subprocess
    import sys
    bad = tmp_path / 'bad.pth'
    torch.save({'model': {'fc.weight': torch.zeros(2, 2)}}, bad)
    proc = subprocess.run([sys.executable, 'tools/model_converters/biformer_to_mm.py',
                           str(bad), str(tmp_path / 'out.pth')], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'not an official BiFormer checkpoint' in proc.stderr
    assert not (tmp_path / 'out.pth').exists()


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_segmentation_inference_any_size(mode):
    """Whole-image and sliding-window inference on a size that is a multiple of neither
    32 nor the region grid."""
    from mmseg.structures import SegDataSample
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/upernet_biformer_s.py'))
    cfg.model.backbone.update(arch='tiny', init_cfg=None)
    cfg.model.data_preprocessor.size = None
    cfg.model.data_preprocessor.size_divisor = None
    if mode == 'slide':
        cfg.model.test_cfg = dict(mode='slide', crop_size=(48, 48), stride=(32, 32))
    model = build_model(cfg).eval()
    h, w = 75, 101
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    batch = {'inputs': [torch.randint(0, 255, (3, h, w), dtype=torch.uint8)],
             'data_samples': [sample]}
    with torch.no_grad():
        pred = model.test_step(batch)[0]
    assert pred.pred_sem_seg.data.shape == (1, h, w)
    assert pred.seg_logits.data.shape == (150, h, w)
