"""DepthwiseConv2d: nn.Conv2d's results with PyTorch's own kernels on CUDA."""
import pytest
import torch
import torch.nn.functional as F

from mmbiformer import BiFormer
from mmbiformer.ops.dwconv import DepthwiseConv2d, _NativeDepthwiseConv

from conftest import requires_cuda as cuda  # noqa: E402


def test_same_module_as_conv2d():
    layer = DepthwiseConv2d(6, 5)
    assert isinstance(layer, torch.nn.Conv2d)
    assert (layer.groups, layer.padding, layer.stride) == (6, (2, 2), (1, 1))
    assert sorted(layer.state_dict()) == ['bias', 'weight']
    assert layer.impl == 'native'


def test_backbone_sets_impl_and_checks_it():
    model = BiFormer('tiny', dwconv_impl='cudnn')
    impls = {m.impl for m in model.modules() if isinstance(m, DepthwiseConv2d)}
    assert impls == {'cudnn'}
    assert len([m for m in model.modules() if isinstance(m, DepthwiseConv2d)]) == 2 * 14
    with pytest.raises(ValueError, match="dwconv_impl must be 'native'"):
        BiFormer('tiny', dwconv_impl='fast')


@pytest.mark.parametrize('k', [3, 5])
def test_function_gradients(k):
    """The autograd function's backward (aten.convolution_backward) in fp64."""
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    pad = (k // 2, k // 2)
    torch.testing.assert_close(_NativeDepthwiseConv.apply(x, w, b, pad),
                               F.conv2d(x, w, b, padding=pad, groups=3))
    assert torch.autograd.gradcheck(lambda *t: _NativeDepthwiseConv.apply(*t, pad), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: _NativeDepthwiseConv.apply(x, w, None, pad),
                                    (x, w))


@cuda
@pytest.mark.parametrize('autocast', [False, True])
def test_cuda_native_matches_reference(autocast):
    """Output and gradients against fp64; under fp16 autocast the native kernels may be
    no more than 1.5x as far from it as cuDNN's."""
    torch.manual_seed(0)
    layer = DepthwiseConv2d(64, 5).cuda()
    x = torch.randn(2, 64, 37, 53, device='cuda')

    def run(impl, dtype=None):
        ref = impl == 'fp64'
        m = DepthwiseConv2d(64, 5).cuda().double() if ref else layer
        if ref:
            m.load_state_dict(layer.state_dict())
        else:
            m.impl = impl
        m.zero_grad()
        xi = (x.double() if ref else x).clone().requires_grad_()
        with torch.autocast('cuda', torch.float16, enabled=autocast and not ref):
            y = m(xi)
        (y.double() * torch.cos(y.double())).sum().backward()
        return [y.double(), xi.grad.double(), m.weight.grad.double(), m.bias.grad.double()]

    want = run('fp64')
    errors = {}
    for impl in ('native', 'cudnn'):
        errors[impl] = [((g - w).norm() / w.norm()).item() for g, w in zip(run(impl), want)]
    bound = 2e-2 if autocast else 1e-5
    for e_native, e_cudnn in zip(errors['native'], errors['cudnn']):
        assert e_native < bound, errors
        if autocast:
            assert e_native <= 1.5 * e_cudnn + 1e-4, errors


@pytest.mark.parametrize('shape,stride,padding', [((2, 3, 17, 22), 2, 1),
                                                  ((1, 8, 9, 8), 2, 1),
                                                  ((1, 4, 6, 7), 1, 0)])
def test_conv_as_gemm_equals_conv2d(shape, stride, padding):
    """The stem / down-sampling convs' im2col path: values and gradients of F.conv2d."""
    from mmbiformer.ops.dwconv import conv2d_as_gemm
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, shape[1], 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ours = conv2d_as_gemm(x, w, b, (stride, stride), (padding, padding))
    ref = torch.nn.functional.conv2d(x, w, b, stride, padding)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, w, b), g),
                               torch.autograd.grad(ref, (x, w, b), g))


def test_backbone_strided_convs_follow_impl():
    from mmbiformer.ops.dwconv import GemmConv2d
    for impl in ('native', 'cudnn'):
        model = BiFormer('tiny', dwconv_impl=impl)
        convs = [m for m in model.downsample_layers.modules() if isinstance(m, GemmConv2d)]
        assert len(convs) == 5 and {c.impl for c in convs} == {impl}
