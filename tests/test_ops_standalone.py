"""The op layer is plain PyTorch: with every OpenMMLab package made unimportable,
``mmbiformer.ops`` imports, builds BRA and runs it forward and backward, and importing
it changes nothing outside the package (torch's safe-load list included)."""

from helpers import run_python

SCRIPT = r'''
import importlib.abc, sys
BLOCKED = ('mmcv', 'mmengine', 'mmdet', 'mmseg', 'mmpretrain')

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is blocked in this test')

sys.meta_path.insert(0, Block())
import torch
safe_before = list(torch.serialization.get_safe_globals())
import mmbiformer
from mmbiformer.ops import BiLevelRoutingAttention, set_attn_impl
bra = BiLevelRoutingAttention(32, num_heads=4, n_win=3, topk=2, side_dwconv=5, auto_pad=True)
set_attn_impl(bra, 'sdpa')
x = torch.randn(2, 10, 11, 32, requires_grad=True)
y = bra(x)
y.sum().backward()
assert y.shape == x.shape and x.grad.shape == x.shape and bra.qkv.qkv.weight.grad is not None
assert mmbiformer.BiLevelRoutingAttention is BiLevelRoutingAttention
assert list(torch.serialization.get_safe_globals()) == safe_before
loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED + ('torchvision',))
assert not loaded, loaded
print('standalone ok')
'''


def test_ops_need_only_pytorch_and_patch_nothing():
    out = run_python('-c', SCRIPT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'standalone ok' in out.stdout


def test_openmmlab_entry_registers_and_applies_the_fixes():
    """What the configs' custom_imports load (conftest imports it for the suite)."""
    import torch
    from mmengine.logging import HistoryBuffer
    from mmengine.registry import HOOKS, MODELS
    import mmbiformer.openmmlab  # noqa: F401
    assert MODELS.get('BiFormer') is not None and HOOKS.get('RNGStateHook') is not None
    assert HistoryBuffer in torch.serialization.get_safe_globals()
