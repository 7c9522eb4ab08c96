"""An independent, functional re-statement of the official BiFormer (test oracle).

Written from the official model's facts, not from mmbiformer's modules: weights come
as a flat dict with *official* key names, layers are ``torch.nn.functional`` calls,
regions are formed with einops and K/V are selected with an expanded ``gather`` (the
official scheme). Tests compare mmbiformer against it.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange

ARCHS = {
    'tiny': ([2, 2, 8, 2], [64, 128, 256, 512]),
    'small': ([4, 4, 18, 4], [64, 128, 256, 512]),
    'base': ([4, 4, 18, 4], [96, 192, 384, 768]),
}
TOPKS = [1, 4, 16, -2]
HEAD_DIM, MLP_RATIO, SIDE_DWCONV = 32, 3, 5


def official_shapes(arch: str, num_classes: int = 1000) -> Dict[str, Tuple[int, ...]]:
    """Every key of an official ImageNet checkpoint's ``model`` with its shape."""
    depths, dims = ARCHS[arch]
    shapes = {}

    def bn(prefix, c):
        shapes.update({f'{prefix}.weight': (c, ), f'{prefix}.bias': (c, ),
                       f'{prefix}.running_mean': (c, ), f'{prefix}.running_var': (c, ),
                       f'{prefix}.num_batches_tracked': ()})

    def linear(prefix, cin, cout, bias=True):
        shapes[f'{prefix}.weight'] = (cout, cin)
        if bias:
            shapes[f'{prefix}.bias'] = (cout, )

    def dwconv(prefix, c, k):
        shapes[f'{prefix}.weight'] = (c, 1, k, k)
        shapes[f'{prefix}.bias'] = (c, )

    shapes['downsample_layers.0.0.weight'] = (dims[0] // 2, 3, 3, 3)
    shapes['downsample_layers.0.0.bias'] = (dims[0] // 2, )
    bn('downsample_layers.0.1', dims[0] // 2)
    shapes['downsample_layers.0.3.weight'] = (dims[0], dims[0] // 2, 3, 3)
    shapes['downsample_layers.0.3.bias'] = (dims[0], )
    bn('downsample_layers.0.4', dims[0])
    for i in range(1, 4):
        shapes[f'downsample_layers.{i}.0.weight'] = (dims[i], dims[i - 1], 3, 3)
        shapes[f'downsample_layers.{i}.0.bias'] = (dims[i], )
        bn(f'downsample_layers.{i}.1', dims[i])
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        for j in range(depth):
            p = f'stages.{i}.{j}'
            dwconv(f'{p}.pos_embed', dim, 3)
            for n in ('norm1', 'norm2'):
                shapes[f'{p}.{n}.weight'] = (dim, )
                shapes[f'{p}.{n}.bias'] = (dim, )
            if TOPKS[i] > 0:
                linear(f'{p}.attn.qkv.qkv', dim, 3 * dim)
                linear(f'{p}.attn.wo', dim, dim)
            else:
                linear(f'{p}.attn.qkv', dim, 3 * dim, bias=False)
                linear(f'{p}.attn.proj', dim, dim)
            dwconv(f'{p}.attn.lepe', dim, SIDE_DWCONV)
            linear(f'{p}.mlp.0', dim, MLP_RATIO * dim)
            linear(f'{p}.mlp.3', MLP_RATIO * dim, dim)
    bn('norm', dims[-1])
    linear('head', dims[-1], num_classes)
    return shapes


def random_official_state_dict(arch: str, num_classes: int = 1000,
                               seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random weights in the official layout (BN statistics non-trivial)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in official_shapes(arch, num_classes).items():
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(100)
        elif k.endswith('running_var'):
            state[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith('.weight') and len(shape) == 1:  # norm scales
            state[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            state[k] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


def bra(x, w: Dict[str, torch.Tensor], p: str, num_heads: int, n_win: int, topk: int,
        qk_dim: Optional[int] = None, kv_pool=None, soft_routing=False,
        auto_pad=True) -> torch.Tensor:
    """Bi-level routing attention on NHWC ``x`` with official-named weights ``p.*``."""
    N, H_in, W_in, dim = x.shape
    qk_dim = qk_dim or dim
    scale = qk_dim**-0.5
    if auto_pad:
        x = F.pad(x, (0, 0, 0, (n_win - W_in % n_win) % n_win,
                      0, (n_win - H_in % n_win) % n_win))
    H, W = x.shape[1:3]
    x = rearrange(x, 'n (j h) (i w) c -> n (j i) h w c', j=n_win, i=n_win)
    qkv = F.linear(x, w[f'{p}.qkv.qkv.weight'], w[f'{p}.qkv.qkv.bias'])
    q, kv = qkv.split([qk_dim, qk_dim + dim], dim=-1)
    q_pix = rearrange(q, 'n p2 h w c -> n p2 (h w) c')
    kv_pix = rearrange(kv, 'n p2 h w c -> (n p2) c h w')
    if kv_pool is not None:
        kv_pix = kv_pool(kv_pix)
    kv_pix = rearrange(kv_pix, '(n p2) c h w -> n p2 (h w) c', n=N)
    q_win, k_win = q.mean([2, 3]).detach(), kv[..., :qk_dim].mean([2, 3]).detach()
    v_img = rearrange(kv[..., qk_dim:], 'n (j i) h w c -> n c (j h) (i w)', j=n_win, i=n_win)
    lw = w[f'{p}.lepe.weight']
    lepe = F.conv2d(v_img, lw, w[f'{p}.lepe.bias'], padding=lw.shape[-1] // 2, groups=dim)
    lepe = rearrange(lepe, 'n c hh ww -> n hh ww c')

    logit = (q_win * scale) @ k_win.transpose(-2, -1)
    top_logit, idx = torch.topk(logit, k=topk, dim=-1)
    n, p2, w2, ckv = kv_pix.shape
    sel = torch.gather(kv_pix.view(n, 1, p2, w2, ckv).expand(-1, p2, -1, -1, -1), 2,
                       idx.view(n, p2, topk, 1, 1).expand(-1, -1, -1, w2, ckv))
    if soft_routing:
        sel = sel * top_logit.softmax(-1).view(n, p2, topk, 1, 1)
    k_sel, v_sel = sel.split([qk_dim, dim], dim=-1)
    k_sel = rearrange(k_sel, 'n p2 k w2 (m c) -> (n p2) m c (k w2)', m=num_heads)
    v_sel = rearrange(v_sel, 'n p2 k w2 (m c) -> (n p2) m (k w2) c', m=num_heads)
    q_pix = rearrange(q_pix, 'n p2 w2 (m c) -> (n p2) m w2 c', m=num_heads)
    attn = torch.softmax((q_pix * scale) @ k_sel, dim=-1)
    out = rearrange(attn @ v_sel, '(n j i) m (h w) c -> n (j h) (i w) (m c)',
                    j=n_win, i=n_win, h=H // n_win, w=W // n_win)
    out = out + lepe
    if f'{p}.wo.weight' in w:
        out = F.linear(out, w[f'{p}.wo.weight'], w[f'{p}.wo.bias'])
    return out[:, :H_in, :W_in]


def _global_attention(x, w, p, num_heads=8):
    N, H, W, C = x.shape
    t = x.reshape(N, H * W, C)
    qkv = F.linear(t, w[f'{p}.qkv.weight']).reshape(N, H * W, 3, num_heads, C // num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * (C // num_heads)**-0.5).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(N, H * W, C)
    lw = w[f'{p}.lepe.weight']
    lepe = F.conv2d(x.permute(0, 3, 1, 2), lw, w[f'{p}.lepe.bias'],
                    padding=lw.shape[-1] // 2, groups=C)
    out = out + lepe.flatten(2).transpose(1, 2)
    out = F.linear(out, w[f'{p}.proj.weight'], w[f'{p}.proj.bias'])
    return out.reshape(N, H, W, C)


def _bn(x, w, p):
    return F.batch_norm(x, w[f'{p}.running_mean'], w[f'{p}.running_var'],
                        w[f'{p}.weight'], w[f'{p}.bias'], training=False, eps=1e-5)


def official_features(w: Dict[str, torch.Tensor], x: torch.Tensor, arch: str,
                      n_win: int = 7) -> List[torch.Tensor]:
    """Per-stage NCHW outputs (before any output norm)."""
    depths, dims = ARCHS[arch]
    x = F.conv2d(x, w['downsample_layers.0.0.weight'], w['downsample_layers.0.0.bias'],
                 stride=2, padding=1)
    x = F.gelu(_bn(x, w, 'downsample_layers.0.1'))
    x = F.conv2d(x, w['downsample_layers.0.3.weight'], w['downsample_layers.0.3.bias'],
                 stride=2, padding=1)
    x = _bn(x, w, 'downsample_layers.0.4')
    feats = []
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            x = F.conv2d(x, w[f'downsample_layers.{i}.0.weight'],
                         w[f'downsample_layers.{i}.0.bias'], stride=2, padding=1)
            x = _bn(x, w, f'downsample_layers.{i}.1')
        for j in range(depth):
            p = f'stages.{i}.{j}'
            x = x + F.conv2d(x, w[f'{p}.pos_embed.weight'], w[f'{p}.pos_embed.bias'],
                             padding=1, groups=dim)
            t = x.permute(0, 2, 3, 1)
            y = F.layer_norm(t, (dim, ), w[f'{p}.norm1.weight'], w[f'{p}.norm1.bias'], 1e-6)
            if TOPKS[i] > 0:
                y = bra(y, w, f'{p}.attn', dim // HEAD_DIM, n_win, TOPKS[i])
            else:
                y = _global_attention(y, w, f'{p}.attn')
            t = t + y
            y = F.layer_norm(t, (dim, ), w[f'{p}.norm2.weight'], w[f'{p}.norm2.bias'], 1e-6)
            y = F.linear(F.gelu(F.linear(y, w[f'{p}.mlp.0.weight'], w[f'{p}.mlp.0.bias'])),
                         w[f'{p}.mlp.3.weight'], w[f'{p}.mlp.3.bias'])
            x = (t + y).permute(0, 3, 1, 2)
        feats.append(x)
    return feats


def official_logits(w: Dict[str, torch.Tensor], x: torch.Tensor, arch: str,
                    n_win: int = 7) -> torch.Tensor:
    """Official classifier: features -> BatchNorm2d ``norm`` -> mean -> ``head``."""
    x = _bn(official_features(w, x, arch, n_win)[-1], w, 'norm')
    return F.linear(x.flatten(2).mean(-1), w['head.weight'], w['head.bias'])
