"""DepthwiseConv2d: nn.Conv2d's results with PyTorch's own kernels on CUDA, and the
NHWC Triton kernels (on a CPU in Triton's interpreter, fp64) against F.conv2d."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from mmbiformer import BiFormer
from mmbiformer.ops.backends.triton import unavailable_reason
from mmbiformer.ops.dwconv import DepthwiseConv2d, _NativeDepthwiseConv, set_impl

from helpers import requires_cuda as cuda

CPU = torch.device('cpu')
needs_triton = pytest.mark.skipif(unavailable_reason(CPU) is not None,
                                  reason=f'Triton on CPU: {unavailable_reason(CPU)}')


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


def _conv_nhwc_reference(x, w, b, residual, add_input):
    """The same sum through F.conv2d (an independent path): NHWC in and out."""
    out = F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=w.shape[-1] // 2,
                   groups=x.shape[-1]).permute(0, 2, 3, 1)
    if add_input:
        out = out + x
    return out if residual is None else out + residual


def _triton_vs_reference(x_full, C, k, bias, residual, add_input, device, dtype, tol):
    """x: channels [2:2+C] of ``x_full`` (a slice read in place, as V in qkv)."""
    from mmbiformer.ops.backends.triton.dwconv import dwconv_nhwc
    x_full = x_full.to(device, dtype).requires_grad_()
    x = x_full[..., 2:2 + C]
    w = torch.randn(C, 1, k, k, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(C, device=device, dtype=dtype, requires_grad=True) if bias else None
    res = (torch.randn(x.shape, device=device, dtype=dtype, requires_grad=True)
           if residual else None)
    leaves = [t for t in (x_full, w, b, res) if t is not None]
    got = dwconv_nhwc(x, w, b, res, add_input)
    with torch.no_grad():  # forward-only: the kernel without the custom op, same numbers
        assert torch.equal(dwconv_nhwc(x, w, b, res, add_input), got)
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, leaves, grad)
    ref = _conv_nhwc_reference(*(t.double() if t is not None else None
                                 for t in (x, w, b, res)), add_input)
    ref_grads = torch.autograd.grad(ref, leaves, grad.double())
    for name, a, r in [('output', got, ref)] + list(zip(('x', 'w', 'b', 'res'), got_grads,
                                                          ref_grads)):
        err = ((a.double() - r).norm() / r.norm()).item()
        assert err < tol, f'{name}: relative error {err:.2e}'


# (N, H, W, C, k, bias, residual, add_input): tiles cut by the map's edges, channel
# counts that are no power of two and above one block of 64, both kernel sizes.
TRITON_CASES = [(2, 9, 11, 20, 5, True, True, False), (1, 7, 5, 12, 3, True, False, True),
                (1, 10, 9, 70, 3, False, False, True), (2, 3, 17, 8, 5, True, True, False)]


@needs_triton
@pytest.mark.parametrize('case', TRITON_CASES)
def test_triton_nhwc_matches_conv2d_cpu(case):
    N, H, W, C, k, bias, residual, add_input = case
    torch.manual_seed(0)
    _triton_vs_reference(torch.randn(N, H, W, C + 5), C, k, bias, residual, add_input, CPU,
                         torch.float64, 1e-12)


@needs_triton
@pytest.mark.parametrize('k, C', [(5, 64), (3, 70)])
def test_triton_nhwc_interior_tiles_cpu(k, C, monkeypatch):
    """``INTERIOR``: tiles whose taps lie inside the map load without masks (4 x 4
    tiles: the middle ones of a 12 x 13 map; channels past the first full block take
    the masked path), forward and the mirrored input gradient."""
    from mmbiformer.ops.backends.triton import dwconv as triton_dwconv
    monkeypatch.setattr(triton_dwconv, 'CONFIG',
                        dict(triton_dwconv.CONFIG, TH=4, TW=4, INTERIOR=True))
    torch.manual_seed(0)
    _triton_vs_reference(torch.randn(1, 12, 13, C + 5), C, k, True, True, False, CPU,
                         torch.float64, 1e-12)


@needs_triton
@pytest.mark.parametrize('case', TRITON_CASES[:2] + [(1, 9, 6, 70, 3, True, True, False)])
def test_triton_nhwc_row_kernels_cpu(case, monkeypatch):
    """``ROWS``: the row-streaming kernels (forward, mirrored input gradient, weight and
    bias gradients) on strips of 4 columns and chunks of 4 rows (cut by the map's edges;
    a program of the weight gradient sums several segments), the tap weights held in
    registers (k = 3 here) or reloaded each row (k = 5)."""
    from mmbiformer.ops.backends.triton import dwconv as triton_dwconv
    N, H, W, C, k, bias, residual, add_input = case
    monkeypatch.setattr(triton_dwconv, 'CONFIG', dict(ROWS=True, RH=4, TW=4, BLOCK_C=64,
                                                      num_warps=4, HOIST=k == 3))
    monkeypatch.setattr(triton_dwconv, 'DW_CONFIG', dict(ROWS=True, RH=4, TW=4, BLOCK_C=64,
                                                         num_warps=4, progs_per_sm=1, STAGES=2))
    torch.manual_seed(0)
    _triton_vs_reference(torch.randn(N, H, W, C + 5), C, k, bias, residual, add_input, CPU,
                         torch.float64, 1e-12)


@needs_triton
@pytest.mark.parametrize('dtype, tol, captured', [(torch.float16, 2e-3, False),
                                                  (torch.bfloat16, 1e-2, False),
                                                  (torch.float16, 2e-3, True)])
def test_triton_nhwc_half_precision_cpu(dtype, tol, captured):
    """16-bit inputs (detection trains in fp16, classification in bf16), float32 sums:
    within the inputs' rounding of the float64 reference, forward and every gradient;
    also inside a captured step, where the kernel reads a (K*K, C) copy of the weight
    instead of the parameter in place."""
    from mmbiformer.ops.policy import captured_step
    torch.manual_seed(0)
    with captured_step() if captured else contextlib.nullcontext():
        _triton_vs_reference(torch.randn(2, 9, 11, 20 + 5), 20, 5, True, True, False, CPU,
                             dtype, tol)


@cuda
@pytest.mark.parametrize('case', TRITON_CASES + [(4, 56, 56, 64, 5, True, True, False),
                                                 (2, 100, 152, 128, 3, True, False, True)])
def test_triton_nhwc_matches_conv2d_cuda(case):
    N, H, W, C, k, bias, residual, add_input = case
    torch.manual_seed(0)
    x = torch.randn(N, H, W, C + 5)
    _triton_vs_reference(x, C, k, bias, residual, add_input, 'cuda', torch.float32, 1e-5)
    _triton_vs_reference(x, C, k, bias, residual, add_input, 'cuda', torch.bfloat16, 2e-2)


@cuda
@pytest.mark.parametrize('hoist', [True, False])
@pytest.mark.parametrize('case', [(4, 56, 56, 64, 5, True, True, False),
                                  (2, 100, 152, 128, 3, True, False, True),
                                  (2, 9, 11, 20, 5, True, True, False)])
def test_triton_nhwc_row_kernels_cuda(case, hoist, monkeypatch):
    """The row-streaming kernels (``ROWS``, the sweep's first settings) on the GPU."""
    from mmbiformer.ops.backends.triton import dwconv as triton_dwconv
    monkeypatch.setattr(triton_dwconv, 'CONFIG', dict(ROWS=True, RH=16, TW=16, BLOCK_C=64,
                                                      num_warps=8, HOIST=hoist))
    monkeypatch.setattr(triton_dwconv, 'DW_CONFIG', dict(ROWS=True, RH=16, TW=8, BLOCK_C=32,
                                                         num_warps=4, progs_per_sm=4))
    test_triton_nhwc_matches_conv2d_cuda(case)


@cuda
def test_triton_nhwc_deterministic_cuda():
    from mmbiformer.ops.backends.triton.dwconv import dwconv_nhwc
    torch.manual_seed(0)
    x = torch.randn(8, 56, 56, 64, device='cuda', requires_grad=True)
    w = torch.randn(64, 1, 5, 5, device='cuda', requires_grad=True)
    b = torch.randn(64, device='cuda', requires_grad=True)
    grad = torch.randn(8, 56, 56, 64, device='cuda')
    runs = [torch.autograd.grad(dwconv_nhwc(x, w, b, add_input=True), (x, w, b), grad)
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@cuda
def test_backbone_triton_dwconv_matches_cudnn_cuda(monkeypatch):
    """The whole backbone (NHWC stages, position embeddings and LCE by Triton) against
    the same weights with cuDNN's convs: outputs and every parameter's gradient. Each
    region routes to all regions, so that no near-tie in the routing can flip; the loss
    projects the outputs on fixed random maps (the squared mean of layer-normed outputs
    is nearly constant: its gradients are all cancellation)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    torch.manual_seed(0)
    arch = dict(depths=[1, 1, 1, 1], embed_dims=[32, 64, 96, 128], topks=[49, 49, 49, -2],
                head_dim=16, mlp_ratio=2)
    model = BiFormer(arch, n_win=7, attn_impl='sdpa').cuda()
    x = torch.randn(2, 3, 224, 224, device='cuda')
    proj = [torch.randn(2, c, 224 // s, 224 // s, device='cuda')
            for c, s in zip(arch['embed_dims'], (4, 8, 16, 32))]
    results = {}
    for impl in ('cudnn', 'triton'):
        model.zero_grad()
        for m in model.modules():
            if hasattr(m, 'impl'):
                m.impl = impl
        outs = model(x)
        sum((o * r).mean() for o, r in zip(outs, proj)).backward()
        results[impl] = [o.detach() for o in outs] + [p.grad.clone() for p in model.parameters()]
    names = [f'out {i}' for i in range(4)] + [n for n, _ in model.named_parameters()]
    # Biases of convs followed by BatchNorm (training mode) have a zero gradient in exact
    # arithmetic: only rounding is left, to be compared with the weights' gradients.
    before_bn = {'downsample_layers.0.0.bias', 'downsample_layers.0.3.bias'} | {
        f'downsample_layers.{i}.0.bias' for i in range(1, 4)}
    grads = dict(zip(names, results['cudnn']))
    for name, a, b in zip(names, results['triton'], results['cudnn']):
        if name in before_bn:
            scale = grads[name.replace('bias', 'weight')].norm()
            assert a.norm() < 1e-3 * scale and b.norm() < 1e-3 * scale, name
            continue
        err = ((a - b).norm() / b.norm()).item()
        assert err < 1e-4, f'{name}: relative error {err:.2e}'


@cuda
def test_forward_only_block_runs_the_triton_conv_with_its_add(monkeypatch):
    """In a forward-only pass 'native' takes the Triton kernel, which adds the block's
    input in its own pass: the backbone's outputs match cuDNN's convs."""
    from mmbiformer.ops.backends.triton import dwconv as triton_dwconv
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    torch.manual_seed(0)
    model = BiFormer('tiny', n_win=7).cuda().eval()
    x = torch.randn(1, 3, 224, 288, device='cuda')
    add_inputs, launch = [], triton_dwconv.conv_nhwc_into

    def spy(out, x, weight, bias=None, residual=None, add_input=False, **kwargs):
        add_inputs.append(add_input)
        return launch(out, x, weight, bias, residual, add_input, **kwargs)

    monkeypatch.setattr(triton_dwconv, 'conv_nhwc_into', spy)
    with torch.no_grad():
        got = model(x)
        set_impl(model, 'cudnn')
        ref = model(x)
    # The position embeddings of tiny's 2+2+8+2 blocks (the other calls: LePE, LCE).
    assert add_inputs.count(True) == 14, add_inputs
    for a, b in zip(got, ref):
        assert ((a - b).norm() / b.norm()).item() < 1e-5


def test_weight_gradient_keeps_the_parameter_strides():
    """A channels-last input gives the (C, 1, k, k) weight gradient other strides over
    the same memory; DDP would warn at every run. Same values as a plain Conv2d's."""
    x = torch.randn(2, 8, 6, 7).contiguous(memory_format=torch.channels_last)
    conv = DepthwiseConv2d(8, 5)
    plain = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8)
    plain.load_state_dict(conv.state_dict())
    conv(x).square().sum().backward()
    plain(x).square().sum().backward()
    assert plain.weight.grad.stride() != plain.weight.stride()  # what the hook undoes
    assert conv.weight.grad.stride() == conv.weight.stride()
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=0, atol=0)


@pytest.mark.parametrize('channels_last', [True, False])
def test_channel_bias_gradient_is_autograds(channels_last):
    """The position embedding's bias add with its gradient as a matrix-vector product
    (``add_channel_bias``) against autograd's ``y + b`` (fp64: exact up to order)."""
    from mmbiformer.ops.dwconv import add_channel_bias
    torch.manual_seed(0)
    y = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    results = []
    for op in (add_channel_bias, lambda y, b: y + b.view(1, -1, 1, 1)):
        y_ = y.detach().requires_grad_()
        out = op(y_, b)
        results.append((out, *torch.autograd.grad(out, (y_, b), g)))
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@cuda
def test_captured_cudnn_conv_bias_gradient_as_mv_cuda():
    """``conv_bias_grad_mv``: the cuDNN position embedding's gradients under bf16
    autocast equal those of the conv with its own bias."""
    from mmbiformer.ops.policy import captured_step, runtime_policy
    torch.manual_seed(0)
    conv = DepthwiseConv2d(32, 3, impl='cudnn').cuda()
    x = torch.randn(4, 32, 14, 14, device='cuda').contiguous(memory_format=torch.channels_last)
    results = []
    for mv in (True, False):
        conv.zero_grad(set_to_none=True)
        x_ = x.detach().requires_grad_()
        with captured_step(), runtime_policy(conv_bias_grad_mv=mv):
            with torch.autocast('cuda', dtype=torch.bfloat16):
                out = conv(x_)
            out.float().square().sum().backward()
        results.append((out.float(), x_.grad, conv.weight.grad, conv.bias.grad))
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=2e-2, atol=2e-2 * e.abs().max().item())
