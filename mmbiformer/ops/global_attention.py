"""Global multi-head self-attention with LePE: BiFormer's last-stage token mixer
(official ``topk=-2``; ``topk=-1`` is the same without LePE)."""
import torch
import torch.nn as nn

from .attention import sdpa
from .dwconv import DepthwiseConv2d
from .linear import Linear


class GlobalAttentionLePE(nn.Module):
    """Plain multi-head self-attention over all tokens, plus LePE.

    LePE is a depthwise conv of the attention's (normed) input, added before ``proj``;
    the qkv projection has no bias (official last-stage attention, ``topk=-2``).
    NHWC in and out.
    """

    def __init__(self, dim: int, num_heads: int = 8, side_dwconv: int = 5,
                 with_lepe: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        self.dim = dim
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, bias=False)
        self.proj = Linear(dim, dim)
        self.lepe = (DepthwiseConv2d(dim, side_dwconv)
                     if with_lepe and side_dwconv > 0 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC
        N, H, W, C = x.shape
        qkv = self.qkv(x.reshape(N, H * W, C)).view(N, H * W, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = sdpa(q, k, v)  # scale head_dim ** -0.5
        out = out.transpose(1, 2).reshape(N, H, W, C)
        if self.lepe is not None:
            out = self.lepe.forward_nhwc(x, residual=out)
        return self.proj(out)

    def attention_macs(self, x: torch.Tensor) -> dict:
        """Multiply-adds of q @ k^T and attn @ v (the projections are counted as
        ``nn.Linear``)."""
        N, H, W, C = x.shape
        return {'attention': N * (H * W)**2 * 2 * C}
