"""Non-overlapping window attention: the plain local baseline among the token mixers.

Multi-head self-attention inside each ``window_size x window_size`` window (Swin's
W-MSA without the shift and without the relative position bias), so that an ablation
against BRA measures what content-aware routing adds over a fixed local neighbourhood.
The map is zero-padded at the bottom/right to whole windows before the projection, as
Swin pads and BRA's ``auto_pad`` does, and cropped back.
"""
import torch
import torch.nn as nn

from .attention import sdpa
from .regions import pad_to_multiple


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(N, H, W, C), H and W multiples of ``ws`` -> (N * nW, ws * ws, C)."""
    N, H, W, C = x.shape
    x = x.view(N, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_reverse(x: torch.Tensor, ws: int, N: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    x = x.view(N, H // ws, W // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, H, W, -1)


class WindowAttention(nn.Module):
    """Self-attention within non-overlapping windows; NHWC in and out.

    Args:
        dim (int): Channels.
        num_heads (int): Heads; must divide ``dim``. Scale ``head_dim ** -0.5``.
        window_size (int): Window side (Swin: 7).
        qkv_bias (bool): Bias of the qkv projection (Swin: True).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7,
                 qkv_bias: bool = True):
        super().__init__()
        if not (isinstance(window_size, int) and window_size >= 1):
            raise ValueError(f'window_size must be an int >= 1, got {window_size!r}')
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return f'dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, H, W, C = x.shape
        ws = self.window_size
        x = pad_to_multiple(x, ws)
        Hp, Wp = x.shape[1:3]
        qkv = self.qkv(window_partition(x, ws))  # (N*nW, ws*ws, 3C)
        q, k, v = qkv.view(qkv.shape[0], ws * ws, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = sdpa(q, k, v).transpose(1, 2).reshape(-1, ws * ws, C)
        out = window_reverse(out, ws, N, Hp, Wp)[:, :H, :W]
        return self.proj(out)

    def attention_macs(self, x: torch.Tensor) -> dict:
        N, H, W, C = x.shape
        ws = self.window_size
        windows = -(-H // ws) * -(-W // ws)
        return {'attention': N * windows * (ws * ws)**2 * 2 * C}
