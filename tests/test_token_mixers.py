"""The rival token mixers (QuadTree-B, shunted, window) against re-statements written
here from the papers' and official code's facts, and the backbone's ``attn_types``."""
import pytest
import torch
import torch.nn.functional as F

from mmbiformer.analysis.flops import count_macs
from mmbiformer.models import BiFormer
from mmbiformer.ops.quadtree import QuadTreeAttention
from mmbiformer.ops.shunted import ShuntedSelfAttention
from mmbiformer.ops.window_attention import WindowAttention
from helpers import TINY_ARCH


def _randomize(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module.double()


def _softmax_attend(q, keys, values, scale):
    """One query (c,) over keys / values (J, c): softmax(q.k * scale) @ v."""
    return torch.softmax(keys @ q * scale, 0) @ values


def _pad(x_nhwc, mult):
    H, W = x_nhwc.shape[1:3]
    return F.pad(x_nhwc, (0, 0, 0, (-W) % mult, 0, (-H) % mult))


def _dwconv(x_nchw, conv):
    return F.conv2d(x_nchw, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2,
                    groups=x_nchw.shape[1])


# -- window attention ----------------------------------------------------------------
def window_restated(m, x):
    """Swin's W-MSA without shift or bias, token by token, on a zero-padded map."""
    N, H, W, C = x.shape
    ws, heads = m.window_size, m.num_heads
    c = C // heads
    xp = _pad(x, ws)
    qkv = F.linear(xp, m.qkv.weight, m.qkv.bias)
    q, k, v = qkv.split(C, -1)
    out = torch.zeros(N, H, W, C, dtype=x.dtype)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                r0, c0 = i // ws * ws, j // ws * ws
                keys = k[n, r0:r0 + ws, c0:c0 + ws].reshape(-1, C)
                vals = v[n, r0:r0 + ws, c0:c0 + ws].reshape(-1, C)
                for h in range(heads):
                    s = slice(h * c, (h + 1) * c)
                    out[n, i, j, s] = _softmax_attend(q[n, i, j, s], keys[:, s], vals[:, s],
                                                      c**-0.5)
    return F.linear(out, m.proj.weight, m.proj.bias)


@pytest.mark.parametrize('size', [(8, 8), (7, 10)])
def test_window_attention_matches_restatement(size):
    m = _randomize(WindowAttention(8, 2, window_size=4))
    x = torch.randn(2, *size, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), window_restated(m, x))


# -- shunted self-attention --------------------------------------------------------------
def shunted_restated(m, x):
    """Official SSA: head group 1 over K/V aggregated at rate r, group 2 at r/2, each V
    plus a depthwise conv of itself; r = 1: full attention plus the conv of V."""
    N, H, W, C = x.shape
    heads, r = m.num_heads, m.sr_ratio
    c = C // heads
    q = F.linear(x, m.q.weight, m.q.bias)
    out = torch.zeros(N, H, W, C, dtype=x.dtype)
    if r == 1:
        k, v = F.linear(x, m.kv.weight, m.kv.bias).split(C, -1)
        groups = [(range(heads), k.reshape(N, -1, C), v.reshape(N, -1, C), 0)]
        local = _dwconv(v.permute(0, 3, 1, 2), m.local_conv).permute(0, 2, 3, 1)
    else:
        xp = _pad(x, r).permute(0, 3, 1, 2)
        groups = []
        for g, (rate, conv, norm, kv, lc) in enumerate([
                (r, m.sr1, m.norm1, m.kv1, m.local_conv1),
                (r // 2, m.sr2, m.norm2, m.kv2, m.local_conv2)]):
            agg = F.conv2d(xp, conv.weight, conv.bias, stride=rate)
            h, w = agg.shape[2:]
            t = F.gelu(F.layer_norm(agg.flatten(2).transpose(1, 2), (C, ), norm.weight,
                                    norm.bias, norm.eps))
            k, v = F.linear(t, kv.weight, kv.bias).split(C // 2, -1)
            v_map = v.transpose(1, 2).reshape(N, C // 2, h, w)
            v = v + _dwconv(v_map, lc).flatten(2).transpose(1, 2)
            half = heads // 2
            groups.append((range(g * half, (g + 1) * half), k, v, g * half))
        local = 0
    for n in range(N):
        for i in range(H):
            for j in range(W):
                for hs, k, v, first in groups:
                    for h in hs:
                        sq = slice(h * c, (h + 1) * c)
                        skv = slice((h - first) * c, (h - first + 1) * c)
                        out[n, i, j, sq] = _softmax_attend(q[n, i, j, sq], k[n][:, skv],
                                                           v[n][:, skv], c**-0.5)
    return F.linear(out + local, m.proj.weight, m.proj.bias)


@pytest.mark.parametrize('sr_ratio,size', [(4, (8, 8)), (4, (9, 6)), (2, (5, 7)), (1, (5, 6))])
def test_shunted_matches_restatement(sr_ratio, size):
    m = _randomize(ShuntedSelfAttention(8, 4, sr_ratio=sr_ratio))
    x = torch.randn(2, *size, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), shunted_restated(m, x))


# -- QuadTree-B ------------------------------------------------------------------------
def quadtree_restated(m, x):
    """QuadTree-B token by token: full attention at the coarsest level; at each finer
    level a query attends to the children of the keys its parent kept and keeps its own
    top-k; each level's message plus LePE, weighted by softmax(weight), is added to all
    the fine tokens under it."""
    L, heads = m.levels, m.num_heads
    N, H, W, C = x.shape
    c = C // heads
    xp = _pad(x, 2**(L - 1))
    q = F.linear(xp, m.q_proj.weight, m.q_proj.bias).permute(0, 3, 1, 2)
    k = F.linear(xp, m.k_proj.weight, m.k_proj.bias).permute(0, 3, 1, 2)
    v = F.linear(xp, m.v_proj.weight, m.v_proj.bias).permute(0, 3, 1, 2)
    qs, ks, vs = [q], [k], [v]  # finest first
    for branch in m.value_branchs:
        gn1, _, conv1, gn2, _, conv2 = branch
        y = F.gelu(F.group_norm(vs[-1], 1, gn1.weight, gn1.bias, gn1.eps))
        y = F.conv2d(y, conv1.weight, conv1.bias, stride=2)
        y = F.gelu(F.group_norm(y, 1, gn2.weight, gn2.bias, gn2.eps))
        vs.append(F.conv2d(y, conv2.weight, conv2.bias))
        qs.append(F.avg_pool2d(qs[-1], 2))
        ks.append(F.avg_pool2d(ks[-1], 2))
    weight = torch.softmax(m.weight, 0)  # coarsest level first
    Hp, Wp = xp.shape[1:3]
    out = torch.zeros(N, C, Hp, Wp, dtype=x.dtype)
    for n in range(N):
        for h in range(heads):
            s = slice(h * c, (h + 1) * c)
            kept = {}  # (level, row, col) -> kept key positions at that level
            for lvl in reversed(range(L)):  # coarsest first
                rank = L - 1 - lvl
                hl, wl = qs[lvl].shape[2:]
                lepe = _dwconv(vs[lvl], m.get_vs[rank])[n, s]
                for i in range(hl):
                    for j in range(wl):
                        if lvl == L - 1:
                            cand = [(a, b) for a in range(hl) for b in range(wl)]
                        else:
                            cand = [(2 * a + da, 2 * b + db)
                                    for a, b in kept[(lvl + 1, i // 2, j // 2)]
                                    for da in (0, 1) for db in (0, 1)]
                        keys = torch.stack([ks[lvl][n, s, a, b] for a, b in cand])
                        vals = torch.stack([vs[lvl][n, s, a, b] for a, b in cand])
                        scores = keys @ qs[lvl][n, s, i, j]
                        msg = torch.softmax(scores * c**-0.5, 0) @ vals
                        top = scores.topk(min(m.topks[rank], len(cand))).indices
                        kept[(lvl, i, j)] = [cand[t] for t in top.tolist()]
                        f = 2**lvl
                        out[n, s, i * f:(i + 1) * f, j * f:(j + 1) * f] += \
                            weight[rank] * (msg + lepe[:, i, j])[:, None, None]
    out = out[:, :, :H, :W].permute(0, 2, 3, 1)
    return F.linear(out, m.proj.weight, m.proj.bias)


@pytest.mark.parametrize('levels,topk,size', [(3, 2, (8, 8)), (3, [3, 4, 5], (7, 5)),
                                              (2, 3, (6, 9)), (1, 4, (3, 4))])
def test_quadtree_matches_restatement(levels, topk, size):
    m = _randomize(QuadTreeAttention(8, 2, levels=levels, topk=topk))
    x = torch.randn(2, *size, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), quadtree_restated(m, x))


# -- shared behaviour --------------------------------------------------------------------
OPS = {
    'quadtree': lambda: QuadTreeAttention(16, 2, levels=3, topk=2),
    'shunted': lambda: ShuntedSelfAttention(16, 2, sr_ratio=4),
    'shunted_r1': lambda: ShuntedSelfAttention(16, 2, sr_ratio=1),
    'window': lambda: WindowAttention(16, 2, window_size=4),
}


@pytest.mark.parametrize('name', OPS)
def test_gradients_reach_every_parameter(name):
    m = OPS[name]()
    x = torch.randn(2, 11, 13, 16, requires_grad=True)
    m(x).square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing and x.grad.abs().sum() > 0


@pytest.mark.parametrize('name', OPS)
def test_runs_under_autocast(name):
    m = OPS[name]()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = m(torch.randn(1, 9, 10, 16))
    assert y.shape == (1, 9, 10, 16) and torch.isfinite(y.float()).all()


def _linear_conv_macs(m, x):
    macs = count_macs(m, x)
    return macs['attention'], macs['linear'], macs['conv']


def test_flops_hand_counts():
    C = 16
    # Window 4 on 10x9: padded 12x12, 9 windows of 16 tokens.
    att, lin, conv = _linear_conv_macs(WindowAttention(C, 2, window_size=4),
                                       torch.randn(1, 10, 9, C))
    assert att == 9 * 16 * 16 * 2 * C
    assert lin == 144 * C * 3 * C + 90 * C * C  # qkv on padded windows, proj on 90
    # Shunted r=4 on 8x12: 96 queries; K/V of 2x3 = 6 (rate 4) and 4x6 = 24 (rate 2)
    # tokens, each head group with C/2 channels.
    att, lin, conv = _linear_conv_macs(ShuntedSelfAttention(C, 2, sr_ratio=4),
                                       torch.randn(1, 8, 12, C))
    assert att == 96 * (6 + 24) * 2 * (C // 2)
    assert lin == 96 * C * C * 2 + (6 + 24) * C * C  # q, proj; kv1, kv2
    assert conv == 6 * C * C * 16 + 24 * C * C * 4 + (6 + 24) * (C // 2) * 9
    # QuadTree, 3 levels, topk 2 on 8x8: full attention over 2x2 tokens, then 16 and 64
    # queries over 4 * 2 keys each.
    att, lin, conv = _linear_conv_macs(QuadTreeAttention(C, 2, levels=3, topk=2),
                                       torch.randn(1, 8, 8, C))
    assert att == (4 * 4 + 16 * 8 + 64 * 8) * 2 * C
    assert lin == 64 * C * C * 4  # q, k, v, proj
    # Value branches (2x2 s2 conv, 1x1 conv) to 4x4 and 2x2; LePE 3x3 on 3 levels.
    assert conv == (16 + 4) * C * C * (4 + 1) + (64 + 16 + 4) * 9 * C


# -- the backbone switch -----------------------------------------------------------------
ARCH = dict(TINY_ARCH, embed_dims=[16, 32, 64, 128])


@pytest.mark.parametrize('attn', ['quadtree', 'shunted', 'window'])
def test_backbone_attn_types(attn):
    bb = BiFormer(ARCH, n_win=4, attn_types=[attn] * 3 + ['global'],
                  attn_cfg=dict(quadtree=dict(topk=4))).train()
    outs = bb(torch.randn(2, 3, 97, 131))
    assert [o.shape[2:] for o in outs] == [(25, 33), (13, 17), (7, 9), (4, 5)]
    sum(o.float().mean() for o in outs).backward()
    assert all(p.grad is not None for n, p in bb.named_parameters() if 'attn' in n)
    assert type(bb.stages[0][0].attn).__name__ != 'BiLevelRoutingAttention'
    # Only the attention changes: everything outside ``.attn.`` keeps its keys.
    default = BiFormer(ARCH, n_win=4)
    strip = {k for k in bb.state_dict() if '.attn.' not in k}
    assert strip == {k for k in default.state_dict() if '.attn.' not in k}


def test_default_attn_types_are_biformers():
    bb = BiFormer(ARCH, n_win=4)
    assert bb.attn_types == ['bra', 'bra', 'bra', 'global']


@pytest.mark.parametrize('kwargs,match', [
    (dict(attn_types=['bra', 'bra', 'bra', 'swin']), "'swin' is not a token mixer"),
    (dict(attn_types=['bra'] * 4), "needs a routing top-k"),
    (dict(attn_types=['window'] * 3), 'needs 4 entries'),
    (dict(attn_cfg=dict(bra=dict(topk=2))), 'takes no options here'),
    (dict(attn_types='shunted', attn_cfg=dict(shunted=dict(sr_ratio=(8, 4)))),
     'one value per stage'),
    (dict(attn_types='shunted', attn_cfg=dict(shunted=dict(sr_ratio=3))),
     'stage 1 .*sr_ratio must be 1 or an even int'),
    (dict(attn_types='quadtree', attn_cfg=dict(quadtree=dict(topk=[8, 40]))),
     'stage 1 .*topk must be an int >= 1 or'),
])
def test_backbone_attn_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BiFormer(ARCH, n_win=4, **kwargs)


def test_quadtree_map_too_small_for_its_levels():
    bb = BiFormer(ARCH, n_win=4, attn_types=['quadtree'] * 3 + ['global'])
    with pytest.raises(ValueError, match=r'2x2 coarsest level \(4 tokens\), fewer than '
                                         r'topk=8: use fewer levels'):
        bb(torch.randn(1, 3, 64, 64))


def test_shunted_odd_heads_error():
    with pytest.raises(ValueError, match='num_heads must be even'):
        ShuntedSelfAttention(24, 3, sr_ratio=2)
