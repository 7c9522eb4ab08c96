"""Official BiFormer checkpoints -> mmbiformer layout (``mmbiformer.weights.converters``)."""
import pytest
import torch

from mmbiformer.weights.checkpoint import CheckpointError, safe_load
from mmbiformer.weights.converters import arch_of, convert_official_file, official_to_mmpretrain
from official_reference import random_official_state_dict


@pytest.mark.parametrize('arch', ['tiny', 'small'])
def test_rekeyed_and_arch_recognised(arch):
    official = random_official_state_dict(arch)
    ours = official_to_mmpretrain(official)
    assert len(ours) == len(official)
    for k, v in official.items():
        new = 'head.fc.' + k[5:] if k.startswith('head.') else 'backbone.' + k
        assert ours[new] is v
    assert arch_of(ours) == arch


def test_file_conversion(tmp_path):
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save({'model': random_official_state_dict('tiny'), 'epoch': 299}, src)
    convert_official_file(str(src), str(dst))
    ckpt = safe_load(str(dst))
    assert ckpt['meta']['arch'] == 'tiny' and 'backbone.norm.weight' in ckpt['state_dict']
    assert not (tmp_path / 'ours.pth.tmp').exists()


def test_not_official_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match='not an official BiFormer checkpoint'):
        official_to_mmpretrain({'backbone.x': torch.zeros(1)})
