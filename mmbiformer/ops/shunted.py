"""Shunted self-attention (SSA; Ren et al., "Shunted Self-Attention via Multi-Scale
Token Aggregation", CVPR 2022), as the official ``SSA.py`` defines it.

With a reduction ratio ``r > 1`` the heads are split into two groups. Group 1 attends
to K/V aggregated at rate ``r`` (a ``r x r`` stride-``r`` conv, LayerNorm, GELU, then a
``Linear`` to k | v), group 2 to K/V aggregated at rate ``r / 2``; each group's V gets a
depthwise 3x3 conv on its own token grid added (``v + conv(v)``) before attention. So one
layer mixes coarse and fine tokens. With ``r = 1`` all heads attend to all tokens and the
depthwise conv of V is added to the attention output instead. Scale ``head_dim ** -0.5``;
no qkv bias (official default). Official key names: ``q``, ``kv`` / ``kv1``, ``kv2``,
``sr1``, ``sr2``, ``norm1``, ``norm2``, ``local_conv*``, ``proj``.

Any input size: the official code needs H and W divisible by ``r``; here the map that is
aggregated is zero-padded at the bottom/right to multiples of ``r`` (queries are not
padded). Where they are divisible, the result equals the official one.
"""
from typing import Tuple

import torch
import torch.nn as nn

from .attention import sdpa
from .regions import pad_to_multiple
from .dwconv import DepthwiseConv2d, GemmConv2d


class ShuntedSelfAttention(nn.Module):
    """Shunted self-attention; NHWC in and out.

    Args:
        dim (int): Channels.
        num_heads (int): Heads; must divide ``dim``, and be even when ``sr_ratio > 1``
            (half the heads per aggregation rate).
        sr_ratio (int): Aggregation rate ``r`` of the first head group; the second uses
            ``r / 2``. 1 (no aggregation) or even. Official per stage: 8, 4, 2, 1.
        qkv_bias (bool): Bias of the q and kv projections (official: False).
        local_kernel (int): Kernel of the depthwise conv on V (official: 3).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1,
                 qkv_bias: bool = False, local_kernel: int = 3):
        super().__init__()
        if not (isinstance(sr_ratio, int) and (sr_ratio == 1 or
                                               (sr_ratio >= 2 and sr_ratio % 2 == 0))):
            raise ValueError(f'sr_ratio must be 1 or an even int (rates r and r/2), '
                             f'got {sr_ratio!r}')
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        if sr_ratio > 1 and num_heads % 2:
            raise ValueError(f'num_heads must be even with sr_ratio={sr_ratio} (two head '
                             f'groups, one per aggregation rate), got {num_heads}')
        self.dim, self.num_heads, self.sr_ratio = dim, num_heads, sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.act = nn.GELU()
            self.sr1 = GemmConv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm1 = nn.LayerNorm(dim)
            self.sr2 = GemmConv2d(dim, dim, sr_ratio // 2, stride=sr_ratio // 2)
            self.norm2 = nn.LayerNorm(dim)
            self.kv1 = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv2 = nn.Linear(dim, dim, bias=qkv_bias)
            self.local_conv1 = DepthwiseConv2d(dim // 2, local_kernel)
            self.local_conv2 = DepthwiseConv2d(dim // 2, local_kernel)
        else:
            self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
            self.local_conv = DepthwiseConv2d(dim, local_kernel)

    def extra_repr(self) -> str:
        return f'dim={self.dim}, num_heads={self.num_heads}, sr_ratio={self.sr_ratio}'

    def _heads(self, z: torch.Tensor, num_heads: int) -> torch.Tensor:
        """(N, L, m*c) -> (N, m, L, c)."""
        return z.view(z.shape[0], z.shape[1], num_heads, -1).transpose(1, 2)

    def _aggregated_kv(self, x_nchw: torch.Tensor, sr: nn.Module, norm: nn.Module,
                       kv: nn.Linear, local_conv: nn.Module) -> Tuple[torch.Tensor, ...]:
        """K/V of one head group from the map aggregated by ``sr``: (N, m/2, L', c)."""
        agg = sr(x_nchw)  # (N, C, h', w')
        h, w = agg.shape[2:]
        tokens = self.act(norm(agg.flatten(2).transpose(1, 2)))
        k, v = kv(tokens).chunk(2, dim=-1)  # (N, L', C/2) each
        v = v + local_conv(v.transpose(1, 2).reshape(v.shape[0], -1, h, w)).flatten(2).transpose(1, 2)
        m = self.num_heads // 2
        return self._heads(k, m), self._heads(v, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, H, W, C = x.shape
        q = self._heads(self.q(x.reshape(N, H * W, C)), self.num_heads)
        if self.sr_ratio > 1:
            x_nchw = pad_to_multiple(x, self.sr_ratio).permute(0, 3, 1, 2)
            m = self.num_heads // 2
            k1, v1 = self._aggregated_kv(x_nchw, self.sr1, self.norm1, self.kv1,
                                         self.local_conv1)
            k2, v2 = self._aggregated_kv(x_nchw, self.sr2, self.norm2, self.kv2,
                                         self.local_conv2)
            out = torch.cat([sdpa(q[:, :m], k1, v1), sdpa(q[:, m:], k2, v2)], dim=1)
            out = out.transpose(1, 2).reshape(N, H, W, C)
        else:
            k, v = self.kv(x).chunk(2, dim=-1)  # NHWC
            out = sdpa(q, self._heads(k.reshape(N, H * W, C), self.num_heads),
                       self._heads(v.reshape(N, H * W, C), self.num_heads))
            out = out.transpose(1, 2).reshape(N, H, W, C)
            out = out + self.local_conv(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out)

    def attention_macs(self, x: torch.Tensor) -> dict:
        """q @ k^T and attn @ v of both head groups (aggregation convs and projections
        are counted as ``nn.Conv2d`` / ``nn.Linear``)."""
        N, H, W, C = x.shape
        L = H * W
        if self.sr_ratio == 1:
            return {'attention': N * L * L * 2 * C}
        r = self.sr_ratio
        L1 = -(-H // r) * -(-W // r)
        L2 = L1 * 4  # rate r / 2 on the same padded map
        # Each group has C/2 channels: (q @ k^T + attn @ v) = 2 * C/2 per key.
        return {'attention': N * L * (L1 + L2) * C}
