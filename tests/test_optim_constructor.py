"""GroupedOptimWrapperConstructor: the same updates as mmengine's default constructor,
with one param group per distinct setting."""
import copy

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper

import mmbiformer.openmmlab  # noqa: F401  (registers the constructor)
from helpers import TINY_ARCH
from mmbiformer.models import BiFormer


def _wrapper(model, grouped: bool):
    cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
               paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                                  custom_keys={'pos_embed': dict(lr_mult=0.5)}))
    if grouped:
        cfg['constructor'] = 'GroupedOptimWrapperConstructor'
    return build_optim_wrapper(model, ConfigDict(cfg))


def test_same_updates_fewer_groups():
    torch.manual_seed(0)
    model = BiFormer(TINY_ARCH, n_win=2)
    twin = copy.deepcopy(model)
    ref, ours = _wrapper(model, False), _wrapper(twin, True)
    n_params = sum(1 for _ in model.parameters())
    assert len(ref.param_groups) >= n_params  # one (or more) per parameter
    # (mmengine adds a group of its own, holding no parameter of the model)
    own = {id(p) for p in twin.parameters()}
    groups = [g for g in ours.param_groups if any(id(p) in own for p in g['params'])]
    # decay, no decay (norms, biases), and pos_embed's lr_mult
    settings = {tuple(sorted((k, repr(v)) for k, v in g.items() if k != 'params'))
                for g in ref.param_groups}
    assert len(groups) == len(settings) == 3
    grouped = [id(p) for g in groups for p in g['params']]
    assert len(grouped) == len(set(grouped)) == n_params
    x = torch.randn(2, 3, 64, 64)
    for _ in range(3):
        for m, w in ((model, ref), (twin, ours)):
            loss = sum(o.square().mean() for o in m(x))
            w.update_params(loss)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize('config', ['configs/det/maskrcnn_biformer_s.py',
                                    'configs/seg/upernet_biformer_s.py',
                                    'configs/cls/biformer_s_in1k.py'])
def test_configs_use_it(config):
    assert Config.fromfile(config).optim_wrapper.constructor == \
        'GroupedOptimWrapperConstructor'
