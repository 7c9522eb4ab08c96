"""Pretrained weights into the backbone (``init_cfg=dict(type='Pretrained')``): official
and mmbiformer layouts, features equal to the official model's, and the errors."""
import pytest
import torch

import mmbiformer.openmmlab  # noqa: F401
from mmbiformer.weights.checkpoint import CheckpointError
from mmbiformer.models import BiFormer
from official_reference import official_features, random_official_state_dict


def _save(tmp_path, obj, name='ckpt.pth'):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_official_checkpoint_loads_with_official_key_names(tmp_path):
    official = random_official_state_dict('tiny')
    path = _save(tmp_path, {'model': official, 'epoch': 299})
    model = BiFormer('tiny', out_indices=(3, ), out_norm='batchnorm',
                     init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    own = model.state_dict()
    expected = {k for k in official if not k.startswith('head.')}
    assert set(own) == expected  # no missing, no extra backbone key
    for k in expected:
        assert torch.equal(own[k], official[k]), k

    dense = BiFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
    dense.init_weights()
    for k, v in dense.state_dict().items():
        if not k.startswith('extra_norms.'):
            assert torch.equal(v, official[k]), k


def test_features_match_official_oracle(tmp_path):
    official = random_official_state_dict('tiny', seed=3)
    path = _save(tmp_path, {'model': official})
    model = BiFormer('tiny', n_win=7, out_norm='none',
                     init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 75, 61)
    with torch.no_grad():
        ours = model(x)
        ref = official_features(official, x, 'tiny', n_win=7)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert ((a - b).norm() / b.norm()).item() < 1e-4  # fp32 relative error


def test_our_checkpoint_layout_loads(tmp_path):
    src = BiFormer('tiny')
    state = {'backbone.' + k: v for k, v in src.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(3, 512)
    path = _save(tmp_path, {'state_dict': state, 'meta': {}})
    model = BiFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_checkpoint_errors(tmp_path):
    unrelated = _save(tmp_path, {'model': {'conv.weight': torch.zeros(3)}}, 'other.pth')
    with pytest.raises(CheckpointError, match='none of its 1 weights match'):
        BiFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=unrelated)).init_weights()
    base = _save(tmp_path, {'model': random_official_state_dict('base')}, 'base.pth')
    with pytest.raises(CheckpointError, match='do not fit this arch'):
        BiFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=base)).init_weights()
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(CheckpointError, match='corrupt or not a PyTorch checkpoint'):
        BiFormer('tiny', init_cfg=dict(type='Pretrained',
                                       checkpoint=str(corrupt))).init_weights()
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        BiFormer('tiny', init_cfg=dict(type='Pretrained',
                                       checkpoint=str(tmp_path / 'missing.pth'))).init_weights()


@pytest.mark.parametrize('file_arch, model_arch, expected', [
    ('tiny', 'small', r'holds \[2, 2, 8, 2\] blocks per stage, this arch has \[4, 4, 18, 4\]'),
    ('small', 'tiny', r'backbone of a bigger model: it holds \[4, 4, 18, 4\] blocks per '
                      r'stage, this model \[2, 2, 8, 2\]')])
def test_other_block_counts_are_refused_unless_allowed(tmp_path, monkeypatch, file_arch,
                                                       model_arch, expected):
    """BiFormer-T weights (2, 2, 8, 2 blocks) for an S backbone (4, 4, 18, 4): every
    tensor of T fits, but S's extra blocks would stay random, after an INFO line. S
    weights for a T backbone: T's tensors all load, S's extra blocks would be dropped
    without a word."""
    import mmbiformer.weights.pretrained as pretrained
    path = _save(tmp_path, {'state_dict': {'backbone.' + k: v for k, v in
                                           BiFormer(file_arch).state_dict().items()}})
    with pytest.raises(CheckpointError, match=expected + r'.*allow_partial=True'):
        BiFormer(model_arch, init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
    logged = []
    monkeypatch.setattr(pretrained, 'print_log', lambda m, **kw: logged.append(m))
    BiFormer(model_arch, init_cfg=dict(type='Pretrained', checkpoint=path,
                                       allow_partial=True)).init_weights()
    assert any('allow_partial=True: loading what fits' in m for m in logged)

class _Evil:
    pass


def test_foreign_objects_are_refused(tmp_path):
    path = _save(tmp_path, {'model': random_official_state_dict('tiny'), 'x': _Evil()})
    with pytest.raises(CheckpointError, match='safe'):
        BiFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
