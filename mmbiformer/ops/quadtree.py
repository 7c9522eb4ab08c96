"""QuadTree attention, variant B (Tang et al., "QuadTree Attention for Vision
Transformers", ICLR 2022), the variant behind the paper's ImageNet, COCO and ADE20K
results, in plain PyTorch (the official code needs its fp32-only CUDA ops
``score_computation`` and ``value_aggregation``; this runs anywhere and under AMP).

Facts from the official code (``QTAttB`` and ``QuadtreeAttention(attn_type='B')``):

* q, k, v are 1x1 projections (``q_proj``, ``k_proj``, ``v_proj``, bias ``qkv_bias``);
  a pyramid of ``levels`` levels halves the map per level: q and k by 2x2 average
  pooling, v by a learned branch (``value_branchs``: GroupNorm(1), GELU, 2x2 stride-2
  conv, GroupNorm(1), GELU, 1x1 conv);
* the coarsest level is full attention; each query keeps the ``topk`` keys of highest
  attention;
* at each finer level the four child queries of a parent attend to the four children of
  each of the parent's kept keys (``4 * topk`` keys, softmax over them) and keep their
  own ``topk`` of those;
* every level's message plus its LePE (a depthwise 3x3 conv of that level's V,
  ``get_vs``) is weighted by ``softmax(weight)`` over the levels and added to all the
  fine tokens under it; ``proj`` follows. Softmax scale ``head_dim ** -0.5``.

Per-level lists (``get_vs``, ``weight``, ``topks``) run from the coarsest level to the
finest, as in the official code. Any input size: the input is zero-padded at the
bottom/right to multiples of ``2 ** (levels - 1)`` before the projections (as BRA's
``auto_pad`` does) and the output cropped back.
"""
from typing import List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import sdpa
from .regions import pad_to_multiple
from .dwconv import DepthwiseConv2d, GemmConv2d


def _value_branch(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(1, dim), nn.GELU(), GemmConv2d(dim, dim, 2, stride=2),
                         nn.GroupNorm(1, dim), nn.GELU(), GemmConv2d(dim, dim, 1))


def children_index(index: torch.Tensor, w_coarse: int) -> torch.Tensor:
    """Flat indices (row * w + col) of kept keys on a grid ``w_coarse`` wide -> flat
    indices of their four children on the grid twice as fine: (..., K) -> (..., 4K),
    each key's children in the order (0,0), (0,1), (1,0), (1,1)."""
    row, col = index // w_coarse, index % w_coarse
    w_fine = 2 * w_coarse
    kids = [(2 * row + dr) * w_fine + 2 * col + dc for dr in (0, 1) for dc in (0, 1)]
    return torch.stack(kids, dim=-1).flatten(-2)


def to_parent_groups(z: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, m, h*w, c) on an h x w grid (h, w even) -> (N, m, h*w/4, 4, c): each parent's
    2x2 children together, parents row-major."""
    N, m, _, c = z.shape
    z = z.view(N, m, h // 2, 2, w // 2, 2, c).permute(0, 1, 2, 4, 3, 5, 6)
    return z.reshape(N, m, h * w // 4, 4, c)


def from_parent_groups(z: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`to_parent_groups`."""
    N, m, _, _, c = z.shape
    z = z.view(N, m, h // 2, w // 2, 2, 2, c).permute(0, 1, 2, 4, 3, 5, 6)
    return z.reshape(N, m, h * w, c)


def _gather_tokens(z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """z (N, m, L, c), index (N, m, P, J) -> (N, m, P, J, c)."""
    N, m, P, J = index.shape
    flat = index.reshape(N, m, P * J, 1).expand(-1, -1, -1, z.shape[-1])
    return torch.gather(z, 2, flat).view(N, m, P, J, -1)


class QuadTreeAttention(nn.Module):
    """QuadTree-B attention; NHWC in and out.

    Args:
        dim (int): Channels.
        num_heads (int): Heads; must divide ``dim``.
        levels (int): Pyramid levels (official ``sr_ratio``: 4, 3, 2, 1 for the four
            stages). 1 is full attention with LePE.
        topk (int | list[int]): Keys kept per query at each level, coarsest first
            (official: 8 at every level). Each must be at most 4x the previous one,
            and the first at most the coarsest level's token count.
        qkv_bias (bool): Bias of the q, k, v projections (official: True).
        lepe (bool): Add each level's depthwise 3x3 conv of V (official: True).
    """

    def __init__(self, dim: int, num_heads: int, levels: int = 2,
                 topk: Union[int, Sequence[int]] = 8, qkv_bias: bool = True,
                 lepe: bool = True):
        super().__init__()
        if not (isinstance(levels, int) and levels >= 1):
            raise ValueError(f'levels must be an int >= 1, got {levels!r}')
        topks = list(topk) if isinstance(topk, (list, tuple)) else [topk] * levels
        if len(topks) != levels or any(not isinstance(k, int) or k < 1 for k in topks):
            raise ValueError(f'topk must be an int >= 1 or {levels} of them (one per '
                             f'level, coarsest first), got {topk!r}')
        for prev, k in zip(topks, topks[1:]):
            if k > 4 * prev:
                raise ValueError(f'topk {topks}: a level keeps at most 4x the keys of '
                                 f'the level above (its candidates), {k} > 4 * {prev}')
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        self.dim, self.num_heads, self.levels, self.topks = dim, num_heads, levels, topks
        self.scale = (dim // num_heads)**-0.5
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.value_branchs = nn.ModuleList(_value_branch(dim) for _ in range(levels - 1))
        self.get_vs = (nn.ModuleList(DepthwiseConv2d(dim, 3) for _ in range(levels))
                       if lepe else None)
        self.weight = nn.Parameter(torch.randn(levels))  # official init
        self.proj = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return (f'dim={self.dim}, num_heads={self.num_heads}, levels={self.levels}, '
                f'topk={self.topks}')

    def _check_size(self, H: int, W: int) -> None:
        f = 2**(self.levels - 1)
        hc, wc = -(-H // f), -(-W // f)
        if hc * wc < self.topks[0]:
            raise ValueError(
                f'QuadTreeAttention: a {H}x{W} map with levels={self.levels} has a '
                f'{hc}x{wc} coarsest level ({hc * wc} tokens), fewer than topk='
                f'{self.topks[0]}: use fewer levels, a smaller topk, or a larger input')

    def pyramids(self, x: torch.Tensor) -> List[tuple]:
        """q, k, v per level, finest first: NCHW maps."""
        q, k, v = (proj(x).permute(0, 3, 1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = [(q, k, v)]
        for branch in self.value_branchs:
            q, k, v = F.avg_pool2d(q, 2), F.avg_pool2d(k, 2), branch(v)
            out.append((q, k, v))
        return out

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        """NCHW -> (N, m, H*W, c)."""
        N, C, H, W = z.shape
        return z.reshape(N, self.num_heads, C // self.num_heads, H * W).transpose(-2, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, H_in, W_in, C = x.shape
        self._check_size(H_in, W_in)
        x = pad_to_multiple(x, 2**(self.levels - 1))
        pyramid = self.pyramids(x)[::-1]  # coarsest first
        weight = self.weight.softmax(0)

        # Coarsest level: full attention; each query keeps its top-k keys.
        q, k, v = pyramid[0]
        h, w = q.shape[2:]
        qh, kh, vh = self._heads(q), self._heads(k), self._heads(v)
        message = sdpa(qh, kh, vh)  # (N, m, h*w, c)
        with torch.no_grad():
            keep = (qh @ kh.transpose(-2, -1)).topk(self.topks[0], dim=-1).indices
        total = self._level_output(message, v, 0, weight)

        for level in range(1, self.levels):
            q, k, v = pyramid[level]
            total = F.interpolate(total, scale_factor=2, mode='nearest')
            cand = children_index(keep, w)  # (N, m, h*w, 4K) on the finer grid
            h, w = q.shape[2:]
            qg = to_parent_groups(self._heads(q), h, w)  # (N, m, P, 4, c)
            k_sel = _gather_tokens(self._heads(k), cand)  # (N, m, P, 4K, c)
            v_sel = _gather_tokens(self._heads(v), cand)
            logits = (qg * self.scale) @ k_sel.transpose(-2, -1)  # (N, m, P, 4, 4K)
            message = logits.softmax(-1).to(v_sel.dtype) @ v_sel  # (N, m, P, 4, c)
            message = from_parent_groups(message, h, w)
            if level < self.levels - 1:
                with torch.no_grad():
                    top = logits.topk(self.topks[level], dim=-1).indices  # (N,m,P,4,K)
                    chosen = torch.gather(cand.unsqueeze(3).expand(-1, -1, -1, 4, -1),
                                          -1, top)
                    keep = from_parent_groups(chosen, h, w)  # (N, m, h*w, K)
            total = total + self._level_output(message, v, level, weight)

        out = total[:, :, :H_in, :W_in].permute(0, 2, 3, 1)
        return self.proj(out)

    def _level_output(self, message: torch.Tensor, v: torch.Tensor, level: int,
                      weight: torch.Tensor) -> torch.Tensor:
        """weight[level] * (message + LePE of v), as an NCHW map."""
        N, C, h, w = v.shape
        out = message.transpose(-2, -1).reshape(N, C, h, w)
        if self.get_vs is not None:
            out = out + self.get_vs[level](v)
        return out * weight[level]

    def attention_macs(self, x: torch.Tensor) -> dict:
        """q @ k^T and attn @ v: the coarsest level in full, each finer level over
        ``4 * topk`` keys of the level above per query (projections, value branches
        and LePE are counted as ``nn.Linear`` / ``nn.Conv2d``)."""
        N, H, W, C = x.shape
        f = 2**(self.levels - 1)
        hc, wc = -(-H // f), -(-W // f)
        tokens = hc * wc
        macs = N * tokens * tokens * 2 * C
        for level in range(1, self.levels):
            tokens *= 4
            macs += N * tokens * 4 * self.topks[level - 1] * 2 * C
        return {'attention': macs}
