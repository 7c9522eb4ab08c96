import math

import pytest
import torch
import torch.nn as nn

import mmbiformer.openmmlab  # noqa: F401  (registers BiFormer, applies stack fixes)
from mmbiformer.models import BiFormer
from helpers import TINY_ARCH
from official_reference import official_shapes

OFFICIAL_PARAMS = {'tiny': 13_142_760, 'small': 25_536_232, 'base': 56_804_968}


def _stage_sizes(h, w):
    sizes = []
    h, w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
    for _ in range(4):
        sizes.append((h, w))
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return sizes


@pytest.mark.parametrize('n_win', [7, 8, 16])
@pytest.mark.parametrize('shape', [(1, 3, 67, 91), (2, 3, 33, 200)])
def test_output_shapes_any_size(n_win, shape):
    model = BiFormer('tiny', n_win=n_win).eval()
    with torch.no_grad():
        outs = model(torch.randn(*shape))
    assert len(outs) == 4
    for out, dim, (h, w) in zip(outs, [64, 128, 256, 512], _stage_sizes(*shape[2:])):
        assert out.shape == (shape[0], dim, h, w)
        assert torch.isfinite(out).all()


def test_out_indices_and_strides():
    model = BiFormer('tiny', out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(128, 8, 8), (512, 2, 2)]
    assert sorted(model.extra_norms.keys()) == ['1', '3']


def test_gradients_reach_every_parameter():
    model = BiFormer('tiny', n_win=4).train()  # no drop path: no block skipped
    outs = model(torch.randn(2, 3, 48, 40))
    sum(o.square().mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_classifier_parameter_counts_match_official(arch):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    # In mmpretrain's scope whatever an earlier test left as the process's default.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='BiFormer', arch=arch, out_indices=(3, ),
                          out_norm='batchnorm'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=768 if arch == 'base' else 512)))
    count = sum(p.numel() for p in model.parameters())
    oracle = sum(math.prod(s) for k, s in official_shapes(arch).items()
                 if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    assert count == oracle == OFFICIAL_PARAMS[arch]


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_registry_builds_in_every_scope(scope):
    import importlib

    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config(dict(custom_imports=dict(imports=['mmbiformer.openmmlab'], allow_failed_imports=False),
                      model=dict(type='BiFormer', arch='tiny', n_win=8)))
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    assert type(model) is BiFormer


@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 4])
def test_frozen_stages_count_as_mmdet_swin(frozen):
    """-1: nothing; 0: the stem; k: the stem and the first k stages."""
    model = BiFormer('tiny', frozen_stages=frozen)
    model.train()
    for i in range(4):
        stage_frozen = i < frozen
        down_frozen = stage_frozen or (i == 0 and frozen >= 0)
        for m, is_frozen in [(model.downsample_layers[i], down_frozen),
                             (model.stages[i], stage_frozen),
                             (model.extra_norms[str(i)], stage_frozen)]:
            assert all(p.requires_grad != is_frozen for p in m.parameters()), (i, m)
            assert m.training != is_frozen


def test_frozen_stages_default_freezes_nothing():
    model = BiFormer('tiny').train()
    assert model.frozen_stages == -1
    assert all(p.requires_grad for p in model.parameters())


def test_norm_eval_keeps_batchnorm_statistics():
    model = BiFormer('tiny', norm_eval=True).train()
    bn = model.downsample_layers[0][1]
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert model.stages[0][0].norm1.training  # other layers still train


@pytest.mark.parametrize('with_cp', [True, [0, 2]])
def test_with_cp_same_outputs_and_gradients(with_cp):
    """Recomputed blocks give the same outputs and gradients, DropPath included: its
    random numbers are drawn outside the recomputed part, in the same order."""
    torch.manual_seed(0)
    plain = BiFormer('tiny', n_win=4, drop_path_rate=0.5)
    ckpt = BiFormer('tiny', n_win=4, drop_path_rate=0.5, with_cp=with_cp)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 40, 40)
    grads = []
    for model in (plain, ckpt):
        model.train()
        xi = x.clone().requires_grad_()
        torch.manual_seed(1)
        outs = model(xi)
        sum(o.sum() for o in outs).backward()
        grads.append((outs, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    for a, b in zip(grads[0][0], grads[1][0]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grads[0][1], grads[1][1])
    for n, g in grads[0][2].items():
        torch.testing.assert_close(g, grads[1][2][n], msg=n)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), 'arch must be one of'),
    (dict(with_cp=[4]), 'with_cp must be a bool or a list of stage indices'),
    (dict(with_cp='yes'), 'with_cp must be a bool or a list of stage indices'),
    (dict(arch=dict(depths=[1, 1, 1, 1])), 'missing keys'),
    (dict(arch=dict(depths=[1, 1, 1], embed_dims=[8, 16, 32, 64], topks=[1, 1, 1, -2],
                    head_dim=8, mlp_ratio=2)), r"arch\['depths'\] needs 4 entries"),
    (dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64], topks=[0, 1, 1, -2],
                    head_dim=8, mlp_ratio=2)), 'topk must be >= 1'),
    (dict(arch='tiny', n_win=2), r'topk must be an int in \[1, n_win\*\*2 = 4\]'),
    (dict(arch='tiny', n_win=0), 'n_win must be an int >= 1'),
    (dict(out_indices=(4, )), 'out_indices'),
    (dict(out_norm='bn'), 'out_norm must be'),
    (dict(out_norm='batchnorm'), 'out_indices=\\(3,\\)'),
    (dict(frozen_stages=5), 'frozen_stages'), (dict(frozen_stages=-2), 'frozen_stages'),
    (dict(drop_path_rate=1.5), 'drop_path_rate'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BiFormer(**kwargs)


def test_tiny_custom_arch_dict():
    arch = TINY_ARCH
    outs = BiFormer(arch, n_win=4)(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]
    assert isinstance(BiFormer(arch).stages[3][0].attn.lepe, nn.Conv2d)
