"""Every BRA backend against the reference path (the specification).

CPU cases run everywhere (CI): the sdpa backend in float64, the Triton kernels in
Triton's interpreter (``conftest.py`` sets ``TRITON_INTERPRET=1`` on machines without
CUDA). The CUDA cases run where a GPU is present (the device runs them with
``python3 -m pytest -q tests/test_bra_backends.py``).
"""
import pytest
import torch

from mmbiformer.ops.backends.reference import reference_attention
from mmbiformer.ops.policy import captured_step, current_policy
from mmbiformer.ops.backends import sdpa as sdpa_backend
from mmbiformer.ops.backends.choose import choose_backend as _choose
from mmbiformer.ops.backends.triton import unavailable_reason
from mmbiformer.ops.bra import BiLevelRoutingAttention, set_attn_impl

from helpers import requires_cuda as cuda


def choose_backend(impl, device, kv_downsample_mode, soft_routing, grad=False,
                   geometry=None):
    """The chooser with the policy in effect, as the op asks it."""
    return _choose(impl, device, kv_downsample_mode, soft_routing, grad, geometry,
                   current_policy())
CPU = torch.device('cpu')
needs_triton = pytest.mark.skipif(unavailable_reason(CPU) is not None,
                                  reason=f'Triton on CPU: {unavailable_reason(CPU)}')

# (H, W, n_win, topk, soft_routing, kv_downsample_mode): dense-masked and gathered
# sdpa branches, padding, soft routing, KV pooling.
SDPA_CASES = [(14, 14, 7, 4, False, 'identity'), (56, 56, 7, 1, False, 'identity'),
              (13, 9, 4, 3, False, 'identity'), (64, 64, 8, 5, False, 'identity'),
              (40, 48, 4, 3, True, 'identity'), (64, 64, 4, 2, False, 'ada_avgpool')]
# Triton on CPU (interpreter: keep them small): one region tile, several query and key
# tiles (81-token regions), tiny regions packed into one key tile, padding; the last one
# runs the dense kernels (4-token regions, 64 tokens, top 6; padded).
TRITON_CPU_CASES = [(8, 8, 2, 1, False, 'identity'), (18, 18, 2, 2, False, 'identity'),
                    (7, 10, 4, 5, False, 'identity'), (13, 9, 3, 3, False, 'identity'),
                    (7, 7, 4, 6, False, 'identity')]
# The last two run the dense kernels: stage 3 at 224 (top 16), and padded.
CUDA_CASES = [(14, 14, 7, 4, False, 'identity'), (56, 56, 7, 1, False, 'identity'),
              (13, 9, 4, 3, False, 'identity'), (64, 64, 8, 5, False, 'identity'),
              (200, 304, 16, 1, False, 'identity'), (100, 152, 16, 4, False, 'identity'),
              (14, 14, 7, 16, False, 'identity'), (13, 14, 7, 13, False, 'identity')]


def _op(H, W, n_win, topk, soft, mode, impl='reference', dim=32, heads=4):
    torch.manual_seed(0)
    return BiLevelRoutingAttention(dim, heads, n_win=n_win, topk=topk, side_dwconv=5,
                                   auto_pad=True, soft_routing=soft, kv_downsample_mode=mode,
                                   kv_per_win=2, attn_impl=impl)


def _fwd_bwd(op, x, grad):
    x = x.detach().requires_grad_()
    op.zero_grad(set_to_none=True)
    out = op(x)
    out.backward(grad)
    return out.detach(), x.grad, [p.grad for p in op.parameters()]


def _compare(op, x, impl, rtol, atol=None):
    """Output, input gradient and parameter gradients of ``impl`` against the reference:
    elementwise (``atol`` given) or, without ``atol``, as the relative error of each
    tensor's norm (fp32 on a GPU: sums over 10^5 tokens reorder freely)."""
    grad = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    set_attn_impl(op, 'reference')
    ref = _fwd_bwd(op, x, grad)
    set_attn_impl(op, impl)
    assert op.backend(x) == impl
    got = _fwd_bwd(op, x, grad)
    for name, a, b in [('output', got[0], ref[0]), ('input grad', got[1], ref[1])] + [
            (n, g, r) for (n, _), g, r in zip(op.named_parameters(), got[2], ref[2])]:
        if atol is not None:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol,
                                       msg=lambda m, name=name: f'{name}: {m}')
        else:
            err = ((a - b).norm() / b.norm()).item()
            assert err < rtol, f'{name}: relative error {err:.2e}'


@pytest.mark.parametrize('case', SDPA_CASES)
def test_sdpa_matches_reference_cpu(case):
    op = _op(*case).double()
    _compare(op, torch.randn(2, case[0], case[1], 32, dtype=torch.double), 'sdpa', 1e-10,
             1e-10)


@needs_triton
@pytest.mark.parametrize('case', TRITON_CPU_CASES)
def test_triton_matches_reference_cpu(case):
    op = _op(*case, dim=32, heads=2).double()
    _compare(op, torch.randn(2, case[0], case[1], 32, dtype=torch.double), 'triton', 1e-10,
             1e-10)


def test_dense_kernels_where_they_compute_less():
    from mmbiformer.ops.backends.triton import use_dense
    assert use_dense(14, 14, 4, 16)  # stage 3 at 224: 196 keys against 16 x 16 rows
    assert not use_dense(28, 28, 16, 4)  # stage 2 at 224
    assert not use_dense(14, 14, 4, 4)
    assert not use_dense(64, 80, 20, 16)  # stage 3 of a detection input, 16 regions


@needs_triton
@pytest.mark.parametrize('skewed, queries_per_item, dense', [
    (False, 512, False), (False, 1, False), (False, 12, False),
    (True, 512, False), (True, 1, False), (True, 12, False),
    (False, 512, True)])
def test_triton_op_matches_reference(skewed, queries_per_item, dense, monkeypatch):
    """The op on its own: head widths that are no power of two (v: 12 channels, q/k: 8)
    are masked; routing that sends most regions to one region, with dK/dV work split
    over items (one routing region each, or two) and summed from the workspace; the same
    with the dense kernels (routing as a mask over all tokens)."""
    from mmbiformer.ops.backends.triton import routed_attention as ra
    monkeypatch.setattr(ra, 'QUERIES_PER_ITEM', queries_per_item)
    monkeypatch.setattr(ra, 'use_dense', lambda *sizes: dense)
    routed_attention = ra.routed_attention
    torch.manual_seed(0)
    N, S, h, w, m, qd, dv, topk = 2, 3, 2, 3, 2, 16, 24, 4
    qkv = torch.randn(N, S * h, S * w, 2 * qd + dv, dtype=torch.double, requires_grad=True)
    index = torch.stack([torch.randperm(S * S)[:topk] for _ in range(N * S * S)])
    index = index.view(N, S * S, topk)
    if skewed:  # every region routes to region 4 first, image 1 to 4 and 7 only
        index = torch.stack([(index[..., 0] + 1) % (S * S), index[..., 1]], -1)
        index[:, :, 0] = 4
        index[:, :, 1] = torch.where(index[:, :, 1] == 4, 3, index[:, :, 1])
        index[1, :, 1] = 7
        index[1, 7, 1] = 0
    out = routed_attention(qkv, index, S, m, qd, qd**-0.5)
    with torch.no_grad():  # forward-only: the kernels without the custom op
        assert torch.equal(routed_attention(qkv, index, S, m, qd, qd**-0.5), out)
    ref = _routed_reference(qkv, index, S, m, qd, dv)
    grad = torch.randn_like(ref)
    got_grad, = torch.autograd.grad(out, qkv, grad)
    ref_grad, = torch.autograd.grad(ref, qkv, grad)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-10, atol=1e-10)



def _routed_reference(qkv, index, S, m, qd, dv):
    """Routed attention of the NHWC ``qkv`` by the reference backend, back in NHWC."""
    N, H, W = qkv.shape[:3]
    h, w = H // S, W // S
    regions = qkv.view(N, S, h, S, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(N, S * S, h * w, -1)
    q, kv = regions[..., :qd], regions[..., qd:]
    ref = reference_attention(q, kv, None, index, m, qd**-0.5, False)
    return ref.view(N, S, S, h, w, dv).permute(0, 1, 3, 2, 4, 5).reshape(N, H, W, dv)


@needs_triton
@pytest.mark.parametrize('dense', [False, True])
def test_triton_op_fp16(dense, monkeypatch):
    """fp16 (detection's and segmentation's ``--amp``): the routed and the dense
    kernels' output and input gradient within fp16's rounding (norm-relative error) of
    the fp64 reference on the same rounded inputs. (bf16 is checked on CUDA,
    ``test_bf16_within_reference_error``: Triton 3.6's interpreter multiplies bf16
    ``tl.dot`` operands as if they were integers, errors of 1e10 on a 16x16 product.)"""
    dtype, tol = torch.float16, 2e-3
    from mmbiformer.ops.backends.triton import routed_attention as ra
    monkeypatch.setattr(ra, 'use_dense', lambda *sizes: dense)
    torch.manual_seed(0)
    N, S, h, w, m, qd, dv, topk = 2, 3, 2, 3, 2, 16, 32, 4
    qkv = torch.randn(N, S * h, S * w, 2 * qd + dv).to(dtype).requires_grad_()
    index = torch.stack([torch.randperm(S * S)[:topk] for _ in range(N * S * S)])
    index = index.view(N, S * S, topk)
    out = ra.routed_attention(qkv, index, S, m, qd, qd**-0.5)
    assert out.dtype == dtype
    qkv64 = qkv.detach().double().requires_grad_()
    ref = _routed_reference(qkv64, index, S, m, qd, dv)
    grad = torch.randn_like(ref)
    got_grad, = torch.autograd.grad(out, qkv, grad.to(dtype))
    ref_grad, = torch.autograd.grad(ref, qkv64, grad)
    for name, a, b in (('output', out, ref), ('input grad', got_grad, ref_grad)):
        err = ((a.double() - b).norm() / b.norm()).item()
        assert err < tol, f'{name}: relative error {err:.1e}'


@pytest.mark.parametrize('backend', ['sdpa', 'triton'])
def test_functional_entry_matches_reference(backend):
    """The functional API on its own: one NHWC signature for every backend, the same
    routing, the LCE inside (Triton) or after (the others)."""
    from mmbiformer.ops import functional
    from mmbiformer.ops.dwconv import DepthwiseConv2d
    if backend == 'triton' and unavailable_reason(CPU):
        pytest.skip(unavailable_reason(CPU))
    torch.manual_seed(0)
    S, qd, dv, m = 3, 16, 24, 2
    qkv = torch.randn(2, S * 2, S * 3, 2 * qd + dv, dtype=torch.double)
    lce = DepthwiseConv2d(dv, 3).double()
    routing = functional.route(*functional.region_means(qkv, S, qd), topk=4, scale=qd**-0.5)
    args = (qkv, routing, S, m, qd, qd**-0.5, lce)
    ref = functional.bi_level_routing_attention(*args, backend='reference')
    got = functional.bi_level_routing_attention(*args, backend=backend)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="backend must be 'reference', 'sdpa' or 'triton'"):
        functional.bi_level_routing_attention(*args, backend='flash')


@needs_triton
@pytest.mark.parametrize('chunk', [1, 2, 3, 8])
def test_dkv_work_lists_each_query_region_once(chunk):
    """The inverse routing and its work items (one kernel) against their definition:
    each key region's items cover, in order, the query regions that routed to it,
    ascending, in runs of at most ``chunk``; one item (count 0) for a region nobody
    routed to; regions with several items get consecutive workspace slots of their
    own; every other row is empty."""
    from mmbiformer.ops.backends.triton.routed_attention import dkv_work
    torch.manual_seed(0)
    index = torch.tensor([[[1, 2], [1, 0], [3, 1], [1, 2]], [[0, 3], [3, 0], [2, 1], [0, 2]]])
    skewed = torch.stack([torch.cat([torch.tensor([5]), torch.randperm(37)[:2] + 6])
                          for _ in range(3 * 43)]).view(3, 43, 3)  # 43 rows send to 5
    # 150 regions: the kernel walks the key regions in blocks, carrying its counts.
    many = torch.stack([torch.randperm(150)[:4] for _ in range(2 * 150)]).view(2, 150, 4)
    for index in (index, skewed, many):
        N, R, topk = index.shape
        routed_by, items, slot_first, n_items, n_slots = dkv_work(index, chunk)
        seen, slots = {}, []
        for key, first, count, slot in items.tolist():
            if key < 0:
                assert (first, count, slot) == (0, 0, -1)
                continue
            seen.setdefault(key, []).append((routed_by[first:first + count].tolist(), slot))
        assert sorted(seen) == list(range(N * R))
        for key, runs in seen.items():
            n, k = divmod(key, R)
            want = [r for r in range(R) if k in index[n, r].tolist()]
            assert sum((run for run, _ in runs), []) == want
            assert all(len(run) == min(chunk, len(want) - i * chunk)
                       for i, (run, _) in enumerate(runs))
            assert n_items[key] == len(runs) == max(1, -(-len(want) // chunk))
            if len(runs) > 1:
                first = slot_first[key].item()
                assert [slot for _, slot in runs] == list(range(first, first + len(runs)))
                slots += [slot for _, slot in runs]
            else:
                assert runs[0][1] == -1 and slot_first[key] == -1
        assert len(set(slots)) == len(slots) and all(0 <= s < n_slots for s in slots)


@needs_triton
@pytest.mark.parametrize('dtype', [torch.float64, torch.float16])
def test_region_means_kernel(dtype):
    """The means of q and k per region, read in place from a projection with v beside
    them (regions of 3 x 5 tokens, 24 channels of q and k each), against PyTorch's."""
    from mmbiformer.ops import functional
    from mmbiformer.ops.backends.triton.routing import region_means
    qkv = torch.randn(2, 4 * 3, 4 * 5, 2 * 24 + 40).to(dtype)
    for got, want in zip(region_means(qkv, 4, 24), functional.region_means(qkv, 4, 24)):
        assert got.dtype == dtype and got.shape == (2, 16, 24)
        tol = 1e-12 if dtype == torch.float64 else 1e-3
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@needs_triton
def test_top_regions_kernel():
    """torch.topk's indices (largest first) on rows without ties, rows not filling the
    last program and widths that are no power of two; among equal logits the lower
    index first, and NaN above everything, as topk ranks it."""
    from mmbiformer.ops.backends.triton.routing import top_regions
    torch.manual_seed(0)
    for shape, k in (((3, 49, 49), 1), ((3, 49, 49), 16), ((2, 70, 70), 7),
                     ((1, 4, 4), 4), ((1, 256, 256), 3)):
        logits = torch.randn(shape)
        assert torch.equal(top_regions(logits, k), torch.topk(logits, k, -1).indices)
    ties = torch.tensor([[[1., 3., 3., 0., 3.], [0., float('nan'), 2., 2., -1.]]])
    assert top_regions(ties, 3).tolist() == [[[1, 2, 4], [1, 2, 3]]]
    assert top_regions(torch.full((1, 2, 3), float('-inf')), 3).tolist() == [[[0, 1, 2]] * 2]


@needs_triton
def test_routing_bits_kernel():
    """Each query region's routed regions as one int64 mask: against the bits written
    out, region 63 (the sign bit) and rows not filling the last program included."""
    from mmbiformer.ops.backends.triton.routing import routing_bits
    torch.manual_seed(0)
    for N, R, k in ((2, 49, 16), (3, 64, 5), (1, 7, 1)):
        index = torch.stack([torch.randperm(R)[:k] for _ in range(N * R)]).view(N, R, k)
        index[0, 0] = torch.arange(R - k, R)  # the last region (R - 1) routed
        masks = [sum(1 << i for i in row) for row in index.view(-1, k).tolist()]
        want = [m - 2**64 if m >= 2**63 else m for m in masks]  # as int64 reads them
        assert routing_bits(index).view(-1).tolist() == want
    assert routing_bits(torch.tensor([[[63, 0]]])).item() == -(2**63) + 1


@pytest.mark.parametrize('dense', [True, False])
def test_both_sdpa_branches_are_exercised(dense, monkeypatch):
    calls = []
    real = sdpa_backend.SDPAPolicy.use_dense
    monkeypatch.setattr(sdpa_backend.SDPAPolicy, 'use_dense',
                        lambda self, *a: calls.append(real(self, *a)) or real(self, *a))
    H = 14 if dense else 56
    topk = 4 if dense else 1
    op = _op(H, H, 7, topk, False, 'identity', impl='sdpa')
    op(torch.randn(1, H, H, 32))
    assert calls == [dense]


def test_sdpa_without_recompute_keeps_gradients():
    op = BiLevelRoutingAttention(32, 4, n_win=8, topk=5, auto_pad=True,
                                 sdpa_recompute_kv=False).double()
    assert 'recompute_kv=False' in repr(op)
    _compare(op, torch.randn(1, 64, 64, 32, dtype=torch.double), 'sdpa', 1e-10, 1e-10)


def test_auto_picks_reference_on_cpu(monkeypatch):
    op = _op(14, 14, 7, 4, False, 'identity', impl='auto')
    from mmbiformer.ops.backends.triton import routed_attention as triton_backend
    monkeypatch.setattr(triton_backend, 'routed_attention',
                        lambda *a, **k: pytest.fail('Triton backend used on CPU by auto'))
    monkeypatch.setattr(sdpa_backend, 'routed_attention',
                        lambda *a, **k: pytest.fail('sdpa backend used on CPU by auto'))
    assert op.backend(torch.zeros(1)) == 'reference'
    op(torch.randn(1, 14, 14, 32))


def test_chooser():
    gpu = torch.device('cuda')
    triton_ok = unavailable_reason(gpu) is None
    assert choose_backend('auto', gpu, 'identity', False) == ('triton' if triton_ok else 'sdpa')
    # Training (gradients recorded) stays on sdpa under auto; asked for, Triton trains.
    assert choose_backend('auto', gpu, 'identity', False, grad=True) == 'sdpa'
    if triton_ok:
        assert choose_backend('triton', gpu, 'identity', False, grad=True) == 'triton'
    # Options the kernels do not cover fall back to sdpa under auto ...
    assert choose_backend('auto', gpu, 'ada_avgpool', False) == 'sdpa'
    assert choose_backend('auto', gpu, 'identity', True) == 'sdpa'
    assert choose_backend('auto', CPU, 'identity', False) == 'reference'
    assert choose_backend('sdpa', CPU, 'identity', False) == 'sdpa'
    # In a step to be captured in a CUDA graph, auto trains on Triton where regions hold
    # at least 16 tokens or the dense kernels take the map (least GPU time); sdpa
    # elsewhere, and outside such a step. Geometry: padded H, W, region tokens, top-k.
    on_triton = 'triton' if triton_ok else 'sdpa'
    with captured_step():
        assert choose_backend('auto', gpu, 'identity', False, True, (28, 28, 16, 4)) == on_triton
        assert choose_backend('auto', gpu, 'identity', False, True, (14, 14, 4, 16)) == on_triton
        assert choose_backend('auto', gpu, 'identity', False, True, (24, 24, 4, 16)) == 'sdpa'
    assert choose_backend('auto', gpu, 'identity', False, True, (28, 28, 16, 4)) == 'sdpa'
    # ... and are refused, with the reason, when Triton is asked for by name.
    with pytest.raises(ValueError, match="soft_routing=True .*attn_impl='auto'"):
        choose_backend('triton', gpu, 'identity', True)
    with pytest.raises(ValueError, match="kv_downsample_mode='maxpool'"):
        choose_backend('triton', gpu, 'maxpool', False)


def test_bad_attn_impl():
    with pytest.raises(ValueError, match='attn_impl must be one of'):
        BiLevelRoutingAttention(32, 4, attn_impl='flash')
    with pytest.raises(ValueError, match='attn_impl must be one of'):
        BiLevelRoutingAttention(32, 4, attn_impl='fast')  # the old name of 'sdpa'


@needs_triton
def test_backbone_triton_matches_reference_cpu():
    from mmbiformer.models import BiFormer
    arch = dict(depths=[1, 1, 1, 1], embed_dims=[32, 64, 96, 128], topks=[1, 2, 4, -2],
                head_dim=16, mlp_ratio=2)
    torch.manual_seed(0)
    model = BiFormer(arch, n_win=2, attn_impl='reference').double().eval()
    x = torch.randn(1, 3, 60, 76, dtype=torch.double)
    with torch.no_grad():
        ref = model(x)
        set_attn_impl(model, 'triton')
        got = model(x)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# -- CUDA ---------------------------------------------------------------------------
@cuda
@pytest.mark.parametrize('impl', ['sdpa', 'triton'])
@pytest.mark.parametrize('case', CUDA_CASES)
def test_matches_reference_cuda_fp32(impl, case, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    op = _op(*case).cuda()
    x = torch.randn(2, case[0], case[1], 32, device='cuda')
    _compare(op, x, impl, 1e-4)


@cuda
@pytest.mark.parametrize('impl', ['sdpa', 'triton'])
@pytest.mark.parametrize('case', [(56, 56, 7, 1, False, 'identity'),
                                  (64, 64, 8, 5, False, 'identity'),
                                  (14, 14, 7, 4, False, 'identity'),
                                  (14, 14, 7, 16, False, 'identity')])
def test_bf16_within_reference_error(impl, case):
    """Under bf16 autocast, each backend is no further from fp64 than the reference."""
    op = _op(*case, dim=64, heads=2).cuda()
    x = torch.randn(4, case[0], case[1], 64, device='cuda')
    exact = op.double()(x.double()).float()
    op.float()
    errs = {}
    for name in ('reference', impl):
        set_attn_impl(op, name)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = op(x).float()
        errs[name] = ((out - exact).norm() / exact.norm()).item()
    # bf16 rounding of q/k/v, attention and LCE: a few percent of the output norm.
    assert errs[impl] < 5e-2, errs
    assert errs[impl] <= 1.5 * errs['reference'] + 1e-3, errs


@cuda
@pytest.mark.parametrize('impl', ['sdpa', 'triton'])
def test_deterministic_cuda(impl, monkeypatch):
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    torch.use_deterministic_algorithms(True)
    try:
        for case in [(56, 56, 7, 1, False, 'identity'), (64, 64, 8, 5, False, 'identity'),
                     (14, 14, 7, 4, False, 'identity'), (14, 14, 7, 16, False, 'identity')]:
            op = _op(*case, impl=impl).cuda()
            x = torch.randn(2, case[0], case[1], 32, device='cuda')
            grad = torch.randn_like(x)
            with torch.autocast('cuda', dtype=torch.bfloat16):
                first, second = _fwd_bwd(op, x, grad), _fwd_bwd(op, x, grad)
            assert torch.equal(first[0], second[0])
            assert torch.equal(first[1], second[1])
            assert all(torch.equal(a, b) for a, b in zip(first[2], second[2]))
    finally:
        torch.use_deterministic_algorithms(False)


@cuda
@pytest.mark.parametrize('impl', ['sdpa', 'triton'])
def test_backbone_matches_reference_cuda_fp32(impl, monkeypatch):
    from mmbiformer.models import BiFormer
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    torch.manual_seed(0)
    model = BiFormer('small', n_win=16, attn_impl='reference').cuda().eval()
    x = torch.randn(1, 3, 336, 496, device='cuda')
    with torch.no_grad():
        ref = model(x)
        set_attn_impl(model, impl)
        got = model(x)
    for a, b in zip(got, ref):
        assert ((a - b).norm() / b.norm()).item() < 1e-4


@cuda
def test_captured_routing_matches_eager():
    """Inside a captured step the region means and top-k run the Triton kernels: the
    same routing as PyTorch's ops (fp32, no ties)."""
    from mmbiformer.ops import functional
    from mmbiformer.ops.backends.triton import routing
    torch.manual_seed(0)
    for case in [(56, 56, 7, 1), (64, 80, 16, 16), (14, 14, 7, 16)]:
        op = _op(*case, False, 'identity', dim=64, heads=2).cuda()
        qkv = op.qkv(torch.randn(2, case[0], case[1], 64, device='cuda'))
        eager = op.route_means(*functional.region_means(qkv, op.n_win, op.qk_dim), False)
        with captured_step():
            means = routing.region_means(qkv, op.n_win, op.qk_dim)
            fast = op.route_means(*means, False, routing.top_regions)
        assert torch.equal(fast.index, eager.index)


def test_set_attn_impl_checks_and_reaches_every_op():
    from mmbiformer.models import BiFormer
    model = BiFormer('tiny', n_win=4)
    set_attn_impl(model, 'reference')
    ops = [m for m in model.modules() if isinstance(m, BiLevelRoutingAttention)]
    assert ops and {m.attn_impl for m in ops} == {'reference'}
    with pytest.raises(ValueError, match='attn_impl must be one of'):
        set_attn_impl(model, 'fast')
    assert {m.attn_impl for m in ops} == {'reference'}


def test_every_backend_takes_one_signature():
    """``attention(qkv, routing, lce, spec)`` for each backend, so that BRA calls any of
    them the same way (``ops/backends/spec.py``)."""
    import inspect

    from mmbiformer.ops.backends import BACKENDS, attention_of
    signatures = {b: list(inspect.signature(attention_of(b)).parameters) for b in BACKENDS}
    assert all(s == ['qkv', 'routing', 'lce', 'spec'] for s in signatures.values()), signatures
