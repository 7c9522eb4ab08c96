"""The blocks' LayerNorm with its fused residual add: the Triton kernels (on a CPU in
Triton's interpreter, fp64; on CUDA in fp32 and under bf16 autocast) against
``x + r`` followed by ``F.layer_norm``, and the block built on it against the plain
formulation, DropPath included."""
import pytest
import torch
import torch.nn.functional as F

from mmbiformer.models.backbones.biformer import BiFormerBlock
from mmbiformer.ops.backends.triton import unavailable_reason
from mmbiformer.ops.layer_norm import LayerNorm

from helpers import requires_cuda as cuda

CPU = torch.device('cpu')
needs_triton = pytest.mark.skipif(unavailable_reason(CPU) is not None,
                                  reason=f'Triton on CPU: {unavailable_reason(CPU)}')


def unfused(x, r, w, b, scale=None):
    if r is None:
        return x, F.layer_norm(x, w.shape, w, b, 1e-6)
    if scale is not None:
        r = r * scale.view(-1, *(1, ) * (r.dim() - 1))
    s = x + r
    return s, F.layer_norm(s, w.shape, w, b, 1e-6)


def run_both(shape, with_r, with_scale, strided_r, device, dtype, autocast=False):
    """Outputs and gradients of the Triton op and of :func:`unfused` (in fp64)."""
    from mmbiformer.ops.backends.triton.layer_norm import add_layer_norm, layer_norm
    gen = torch.Generator().manual_seed(0)

    def rand(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64).to(device)

    C = shape[-1]
    x = rand(*shape)
    r = (rand(shape[0], C, *shape[1:-1]).movedim(1, -1) if strided_r else rand(*shape))
    w, b = rand(C), rand(C)
    scale = torch.tensor([0., 1.25] * shape[0], dtype=torch.float64, device=device)[:shape[0]]
    scale = scale if with_scale else None
    g_s, g_y = rand(*shape), rand(*shape)
    results = []
    for fused in (True, False):
        leaves = [t.detach().to(torch.float64 if not fused else dtype).requires_grad_()
                  for t in (x, r, w, b)]
        if fused:  # parameters stay fp32 (fp64 in the exact checks)
            leaves[2:] = [t.detach().to(torch.float64 if dtype == torch.float64
                                        else torch.float32).requires_grad_()
                          for t in (w, b)]
        lx, lr, lw, lb = leaves
        rr = lr if with_r else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast and fused):
            if fused and with_r:
                s, y = add_layer_norm(lx, rr, lw, lb, 1e-6, scale)
            elif fused:
                s, y = lx, layer_norm(lx, lw, lb, 1e-6)
            else:
                s, y = unfused(lx, rr, lw, lb, scale)
        loss = (y.double() * g_y).sum() + ((s.double() * g_s).sum() if with_r else 0)
        loss.backward()
        grads = [t.grad for t in (lx, lr, lw, lb) if t.grad is not None]
        results.append([s, y] + grads)
    return results


@needs_triton
@pytest.mark.parametrize('shape,with_r,with_scale,strided_r', [
    ((2, 3, 5, 24), True, True, True),     # DropPath factor, a permuted NCHW residual
    ((3, 2, 7, 40), True, False, False),   # C not a power of two
    ((2, 6, 130), True, True, False),      # (N, L, C) tokens
    ((2, 4, 4, 16), False, False, False),  # the plain norm
])
def test_kernels_match_unfused_fp64(shape, with_r, with_scale, strided_r):
    fused, ref = run_both(shape, with_r, with_scale, strided_r, CPU, torch.float64)
    assert len(fused) == len(ref)
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)



@needs_triton
@pytest.mark.parametrize('dtype, tol', [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)])
def test_kernels_half_precision_cpu(dtype, tol):
    """fp16 (detection's and segmentation's ``--amp``) and bf16 activations, fp32
    parameters: every output and gradient within the format's rounding (norm-relative
    error) of the fp64 result on the same inputs."""
    fused, ref = run_both((2, 3, 5, 40), True, True, True, CPU, dtype)
    assert fused[1].dtype == dtype
    for a, b in zip(fused, ref):
        err = (a.double() - b).norm() / b.norm()
        assert err < tol, err

@cuda
@pytest.mark.parametrize('autocast', [False, True])
@pytest.mark.parametrize('shape', [(4, 56, 56, 64), (4, 13, 19, 256), (4, 7, 7, 768)])
def test_cuda_kernels(shape, autocast):
    """fp32: norm-relative error < 1e-5; bf16 autocast (bf16 sums, bf16 normalised
    output as the next Linear reads it): < 1e-2."""
    dev = torch.device('cuda')
    fused, ref = run_both(shape, True, True, True, dev, torch.float32, autocast)
    if autocast:
        assert fused[1].dtype == torch.bfloat16
    for a, b in zip(fused, ref):
        err = (a.double() - b).norm() / b.norm()
        assert err < (1e-2 if autocast else 1e-5), err


@pytest.mark.parametrize('drop_path', [0., 0.5])
def test_block_equals_plain_formulation(drop_path):
    """The block with its fused adds (here the PyTorch path) against the written-out
    block: the same DropPath draws, the same output."""
    torch.manual_seed(0)
    block = BiFormerBlock(16, num_heads=2, topk=2, n_win=2, mlp_ratio=2,
                          drop_path=drop_path).train()
    assert isinstance(block.norm1, LayerNorm) and isinstance(block.norm2, LayerNorm)
    x = torch.randn(4, 8, 8, 16)
    torch.manual_seed(1)
    out = block(x)
    torch.manual_seed(1)
    y = block.pos_embed.forward_nhwc(x, add_input=True)
    y = y + block.drop_path(block.attn(F.layer_norm(y, (16, ), block.norm1.weight,
                                                    block.norm1.bias, 1e-6)))
    y = y + block.drop_path(block.mlp(F.layer_norm(y, (16, ), block.norm2.weight,
                                                   block.norm2.bias, 1e-6)))
    torch.testing.assert_close(out, y)
    if drop_path:  # the draws did drop something
        assert not torch.equal(out, block.eval()(x))


@needs_triton
def test_norm_outputs_recomputed_are_not_kept_and_give_the_same_gradients(monkeypatch):
    """``norm_output_recompute`` (captured steps): the Linear after each norm keeps a
    note instead of the norm's output, and its backward gets the output computed again
    by the norm's kernel: the same loss and gradients, bit for bit, and two maps fewer
    kept a block (counted by hooks outside, which still see every other saved tensor)."""
    from mmbiformer.ops.backends import choose
    from mmbiformer.ops.policy import captured_step, runtime_policy
    monkeypatch.setattr(choose, '_triton_can_take', lambda x: True)  # CPU: interpreter
    torch.manual_seed(0)
    block = BiFormerBlock(16, num_heads=2, topk=2, n_win=2, mlp_ratio=2,
                          drop_path=0.5).train()
    x = torch.randn(2, 8, 8, 16)
    runs = []
    for recompute in (False, True):
        kept = {}

        def pack(t):
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        torch.manual_seed(1)
        with captured_step(), runtime_policy(norm_output_recompute=recompute), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = block(x.clone().requires_grad_())
        grads = torch.autograd.grad((out * torch.arange(16.)).sum(), list(block.parameters()))
        runs.append((out, grads, sum(kept.values())))
    (out0, grads0, kept0), (out1, grads1, kept1) = runs
    assert torch.equal(out0, out1)
    assert all(torch.equal(a, b) for a, b in zip(grads0, grads1))
    assert kept0 - kept1 == 2 * x.numel() * x.element_size()


@cuda
def test_norm_outputs_recomputed_give_the_same_bits_cuda():
    """On the GPU, under bf16 autocast: the norm-only kernel that recomputes an output
    gives the bits the fused add + norm kernel gave in the forward."""
    from mmbiformer.ops.policy import captured_step, runtime_policy
    torch.manual_seed(0)
    block = BiFormerBlock(64, num_heads=2, topk=4, n_win=4, mlp_ratio=3).cuda().train()
    x = torch.randn(4, 32, 32, 64, device='cuda')
    runs = []
    for recompute in (False, True):
        with captured_step(), runtime_policy(norm_output_recompute=recompute), \
                torch.autocast('cuda', dtype=torch.bfloat16):
            out = block(x.clone().requires_grad_())
        grads = torch.autograd.grad(out.float().sum(), list(block.parameters()))
        runs.append((out, grads))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


@needs_triton
def test_a_recomputed_norm_output_is_freed(monkeypatch):
    """Nothing holds the norm's output once the block is left (the Linear holds a note,
    the hooks no reference); its backward still gets the exact output."""
    import gc
    import weakref
    from mmbiformer.ops.backends import choose
    from mmbiformer.ops.policy import captured_step
    monkeypatch.setattr(choose, '_triton_can_take', lambda x: True)  # CPU: interpreter
    torch.manual_seed(0)
    norm, linear = LayerNorm(16, eps=1e-6), torch.nn.Linear(16, 8)
    x, r = torch.randn(2, 4, 4, 16, requires_grad=True), torch.randn(2, 4, 4, 16)
    with captured_step():
        s, y = norm.add_forward(x, r)
        with norm.output_recomputed(s, y):
            out = linear(y)
    want = torch.autograd.grad(out.sum(), linear.weight, retain_graph=True)[0]
    ref, rows = weakref.ref(y), y.detach().reshape(-1, 16).clone()
    del y
    gc.collect()
    assert ref() is None  # freed: only the note is kept
    got = torch.autograd.grad(out.sum(), linear.weight)[0]
    assert torch.equal(got, want)
    assert torch.equal(want, torch.ones(len(rows), 8).t() @ rows)
