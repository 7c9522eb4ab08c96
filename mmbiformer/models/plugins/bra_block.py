"""A BRA residual block that plugs into convolutional networks (NCHW in and out).

OpenMMLab adds attention to an existing network through plugins: mmdet's ResNet takes
``plugins=[dict(cfg=dict(type='BRABlock', ...), stages=..., position='after_conv3')]``
and builds the block with ``in_channels`` (as its GCNet and GeneralizedAttention configs
do). The same block is what the CSP layers with BRA (``mmbiformer.models.det``) add.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from ...ops.bra import BiLevelRoutingAttention
from ...registry import MODELS


@MODELS.register_module()
class BRABlock(nn.Module):
    """``x + BRA(LN(x))``, then optionally ``+ MLP(LN(x))``: BiFormer's pre-norm
    residuals around Bi-Level Routing Attention, on NCHW maps of any size (auto-padding).

    Args:
        in_channels (int): Channels of the map (given by ResNet's plugin builder).
        n_win (int): Regions per side.
        topk (int): Regions each region attends to (at most ``n_win ** 2``).
        head_dim (int): Channels per head (BiFormer: 32); ``num_heads`` overrides it.
        num_heads (int, optional): Heads; must divide ``in_channels``.
        mlp_ratio (float): Hidden width of the MLP residual; 0 for none.
        side_dwconv (int): LCE kernel (BiFormer: 5).
        drop_path (float): Stochastic depth of both residuals.
        zero_init (bool): Zero the last layer of each residual, so that the block
            starts as the identity and a pre-trained network keeps its outputs at the
            start of fine-tuning (as GCNet's plugins do).
        attn_impl (str): BRA backend (see :class:`BiLevelRoutingAttention`).
    """
    _abbr_ = 'bra_block'

    def __init__(self, in_channels: int, n_win: int = 8, topk: int = 4,
                 head_dim: int = 32, num_heads: Optional[int] = None,
                 mlp_ratio: float = 0., side_dwconv: int = 5, drop_path: float = 0.,
                 zero_init: bool = True, attn_impl: str = 'auto'):
        super().__init__()
        if num_heads is None:
            num_heads = max(1, in_channels // head_dim)
        if in_channels % num_heads:
            raise ValueError(f'BRABlock: in_channels ({in_channels}) must be divisible '
                             f'by num_heads ({num_heads}); set num_heads or head_dim')
        if mlp_ratio < 0:
            raise ValueError(f'mlp_ratio must be >= 0 (0: no MLP), got {mlp_ratio!r}')
        self.norm1 = nn.LayerNorm(in_channels, eps=1e-6)
        self.attn = BiLevelRoutingAttention(
            in_channels, num_heads=num_heads, n_win=n_win, topk=topk,
            side_dwconv=side_dwconv, auto_pad=True, attn_impl=attn_impl)
        self.mlp = None
        if mlp_ratio > 0:
            hidden = int(in_channels * mlp_ratio)
            self.norm2 = nn.LayerNorm(in_channels, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.GELU(),
                                     nn.Linear(hidden, in_channels))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if zero_init:
            last = [self.attn.wo] + ([self.mlp[-1]] if self.mlp is not None else [])
            for layer in last:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f'BRABlock expects an NCHW map, got shape {tuple(x.shape)}')
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2).contiguous()
