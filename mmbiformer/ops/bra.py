"""Bi-Level Routing Attention (BRA), the plain-PyTorch reference path.

This module is the specification: faster implementations are tested against it.
Tensors are NHWC unless a name says otherwise. Symbols used below:

* ``S``  regions per side (``n_win``), so ``S*S`` regions;
* ``h, w`` tokens per region side after auto-padding, ``t`` KV tokens per region
  after optional KV down-sampling;
* ``m`` heads.

Numerics follow the official BiFormer code: one ``Linear(dim, 2*qk_dim+dim)`` gives
q | k | v; region-level q/k are token means (detached unless ``diff_routing``); the
softmax scale is ``qk_dim ** -0.5`` for both routing and token attention; the local
context enhancement (LCE) is a depthwise conv of V at full resolution added before the
output projection; with ``auto_pad`` the input is zero-padded before the projection.
"""
from typing import Optional

import torch
import torch.nn as nn

from ..errors import ArgumentError
from . import functional
from .backends import normalize_impl
from .backends.choose import choose_backend, routing_runs_triton
from .backends.sdpa import SDPAPolicy
from .backends.spec import region_kv
from .dwconv import DepthwiseConv2d
from .functional import Routing
from .linear import Linear
from .policy import current_policy, tracing
from .regions import pad_to_multiple, to_regions

KV_DOWNSAMPLE_MODES = ('identity', 'ada_avgpool', 'ada_maxpool', 'avgpool', 'maxpool')
PARAM_ATTENTION_MODES = ('qkvo', 'qkv')


class QKVLinear(nn.Module):
    """One projection producing q | k | v (``qkv.qkv.*`` in official checkpoints)."""

    def __init__(self, dim: int, qk_dim: int, bias: bool = True):
        super().__init__()
        self.qkv = Linear(dim, 2 * qk_dim + dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.qkv(x)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ArgumentError(msg)


def _build_kv_down(mode: str, kv_per_win: Optional[int],
                   ratio: Optional[int]) -> nn.Module:
    if mode == 'identity':
        return nn.Identity()
    if mode in ('ada_avgpool', 'ada_maxpool'):
        _check(isinstance(kv_per_win, int) and kv_per_win >= 1,
               f"kv_per_win must be an int >= 1 with kv_downsample_mode='{mode}', "
               f'got {kv_per_win!r}')
        pool = nn.AdaptiveAvgPool2d if mode == 'ada_avgpool' else nn.AdaptiveMaxPool2d
        return pool(kv_per_win)
    _check(isinstance(ratio, int) and ratio >= 1,
           f"kv_downsample_ratio must be an int >= 1 with kv_downsample_mode='{mode}', "
           f'got {ratio!r}')
    if ratio == 1:
        return nn.Identity()
    return nn.AvgPool2d(ratio) if mode == 'avgpool' else nn.MaxPool2d(ratio)


class BiLevelRoutingAttention(nn.Module):
    """Bi-Level Routing Attention (BiFormer, CVPR 2023).

    Args:
        dim (int): Input / output channels (and V channels).
        num_heads (int): Attention heads; must divide ``dim`` and ``qk_dim``.
        n_win (int): Regions per side (``S``); the map is split into ``S x S``.
        qk_dim (int, optional): Q/K channels. Defaults to ``dim``.
        qk_scale (float, optional): Softmax scale. Defaults to ``qk_dim ** -0.5``.
        topk (int): Regions each region attends to, ``1 <= topk <= n_win**2``.
        kv_downsample_mode (str): One of ``identity``, ``ada_avgpool``,
            ``ada_maxpool``, ``avgpool``, ``maxpool``: how K/V tokens of a region are
            reduced before token-to-token attention.
        kv_per_win (int): Output side of the adaptive pools (``ada_*`` modes).
        kv_downsample_ratio (int): Pool stride of ``avgpool`` / ``maxpool``.
        param_attention (str): ``qkvo`` (output projection ``wo``) or ``qkv``.
        param_routing (bool): Learnable ``Linear`` on region q/k before routing
            (needs ``diff_routing``).
        diff_routing (bool): Let gradients flow through the routing logits (needs
            ``soft_routing``, the only differentiable routing defined).
        soft_routing (bool): Scale gathered K/V by the softmax of the top-k logits.
        side_dwconv (int): Kernel of the LCE depthwise conv on V (odd; 0 disables).
        auto_pad (bool): Zero-pad H, W to multiples of ``n_win`` and crop back, so
            any size works. Without it, sizes must be multiples of ``n_win``.
        attn_impl (str): Backend of the token attention (``ops/backends``), all with
            the same result: ``reference`` (the specification above), ``sdpa``
            (routed K/V gathered, PyTorch's fused attention; its old name ``fast`` is
            refused), ``triton`` (fused kernels reading q/k/v straight from the
            projection, identity KV mode and hard routing only) or ``auto``: the
            runtime policy's choice (:func:`~mmbiformer.ops.backends.choose.choose_backend`): on
            CUDA ``triton`` for inference where the options allow it and ``sdpa`` for
            eager training, ``reference`` on other devices.
        sdpa_dense_max_tokens, sdpa_dense_min_keep, sdpa_recompute_kv: policy of
            the ``sdpa`` backend (:class:`~.backends.sdpa.SDPAPolicy`).
    """

    def __init__(self,
                 dim: int,
                 num_heads: int = 8,
                 n_win: int = 7,
                 qk_dim: Optional[int] = None,
                 qk_scale: Optional[float] = None,
                 topk: int = 4,
                 kv_downsample_mode: str = 'identity',
                 kv_per_win: Optional[int] = 4,
                 kv_downsample_ratio: Optional[int] = 4,
                 param_attention: str = 'qkvo',
                 param_routing: bool = False,
                 diff_routing: bool = False,
                 soft_routing: bool = False,
                 side_dwconv: int = 3,
                 auto_pad: bool = False,
                 attn_impl: str = 'auto',
                 sdpa_dense_max_tokens: int = 1024,
                 sdpa_dense_min_keep: int = 4,
                 sdpa_recompute_kv: bool = True):
        super().__init__()
        qk_dim = qk_dim or dim
        _check(isinstance(n_win, int) and n_win >= 1,
               f'n_win must be an int >= 1, got {n_win!r}')
        _check(isinstance(num_heads, int) and num_heads >= 1,
               f'num_heads must be an int >= 1, got {num_heads!r}')
        _check(dim % num_heads == 0 and qk_dim % num_heads == 0,
               f'dim ({dim}) and qk_dim ({qk_dim}) must be divisible by '
               f'num_heads ({num_heads})')
        _check(isinstance(topk, int) and 1 <= topk <= n_win**2,
               f'topk must be an int in [1, n_win**2 = {n_win**2}], got {topk!r}')
        _check(kv_downsample_mode in KV_DOWNSAMPLE_MODES,
               f'kv_downsample_mode must be one of {KV_DOWNSAMPLE_MODES}, '
               f'got {kv_downsample_mode!r}')
        _check(param_attention in PARAM_ATTENTION_MODES,
               f'param_attention must be one of {PARAM_ATTENTION_MODES}, '
               f'got {param_attention!r}')
        _check(not param_routing or diff_routing,
               'param_routing=True needs diff_routing=True (a learnable routing '
               'projection gets no gradient otherwise)')
        _check(not diff_routing or soft_routing,
               'diff_routing=True needs soft_routing=True (hard differentiable '
               'routing is not defined by BiFormer)')
        _check(isinstance(side_dwconv, int) and side_dwconv >= 0
               and (side_dwconv == 0 or side_dwconv % 2 == 1),
               f'side_dwconv must be 0 (off) or an odd kernel size, got {side_dwconv!r}')

        self.attn_impl = normalize_impl(attn_impl)
        self.sdpa_policy = SDPAPolicy(sdpa_dense_max_tokens, sdpa_dense_min_keep,
                                      sdpa_recompute_kv)
        self.dim = dim
        self.qk_dim = qk_dim
        self.num_heads = num_heads
        self.n_win = n_win
        self.topk = topk
        self.scale = qk_scale or qk_dim**-0.5
        self.diff_routing = diff_routing
        self.soft_routing = soft_routing
        self.auto_pad = auto_pad
        self.kv_downsample_mode = kv_downsample_mode

        self.qkv = QKVLinear(dim, qk_dim)
        self.wo = Linear(dim, dim) if param_attention == 'qkvo' else nn.Identity()
        self.lepe = DepthwiseConv2d(dim, side_dwconv) if side_dwconv > 0 else None
        # Official key name: ``router.emb``.
        self.router = nn.Module()
        self.router.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()
        self.kv_down = _build_kv_down(kv_downsample_mode, kv_per_win, kv_downsample_ratio)

    def extra_repr(self) -> str:
        return (f'dim={self.dim}, qk_dim={self.qk_dim}, num_heads={self.num_heads}, '
                f'n_win={self.n_win}, topk={self.topk}, auto_pad={self.auto_pad}, '
                f'attn_impl={self.attn_impl}, sdpa={self.sdpa_policy}')

    # -- the routing, and the token attention (mmbiformer.ops.functional) --------
    def route(self, q: torch.Tensor, k: torch.Tensor) -> Routing:
        """Region routing from region-wise q, k of shape (N, S*S, h*w, C):
        ``(weights, index)``, both (N, S*S, topk): softmax over the kept logits, and
        the indices of the kept regions."""
        return self.route_means(q.mean(2), k.mean(2))

    def route_means(self, q_r: torch.Tensor, k_r: torch.Tensor, weights: bool = True,
                    top_regions=None) -> Routing:
        """:meth:`route` from the region means of q and k, (N, S*S, C) each
        (``weights=False``: the index only, by ``top_regions`` if given)."""
        return functional.route(q_r, k_r, self.topk, self.scale, self.router.emb,
                                self.diff_routing, weights, top_regions)

    def region_kv(self, kv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Apply KV down-sampling per region: (N, R, h*w, C) -> (N, R, t, C)."""
        return region_kv(kv, h, w, self.kv_down)

    def backend(self, x: torch.Tensor) -> str:
        """The backend that runs the token attention for input ``x``."""
        geometry = None
        if x.dim() == 4:  # NHWC, padded up to multiples of n_win
            S = self.n_win
            h, w = -(-x.shape[1] // S), -(-x.shape[2] // S)
            geometry = (h * S, w * S, h * w, self.topk)
        return choose_backend(self.attn_impl, x.device, self.kv_downsample_mode,
                              self.soft_routing, torch.is_grad_enabled(), geometry,
                              current_policy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, H, W, dim) NHWC -> (N, H, W, dim)."""
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(f'BiLevelRoutingAttention expects NHWC input with '
                             f'{self.dim} channels, got shape {tuple(x.shape)}')
        N, H_in, W_in, _ = x.shape
        if self.auto_pad:
            x = pad_to_multiple(x, self.n_win)
        elif H_in % self.n_win or W_in % self.n_win:
            raise ValueError(
                f'input size {H_in}x{W_in} is not a multiple of n_win={self.n_win}; '
                f'pass auto_pad=True to pad it, or resize the input')
        qkv = self.qkv(x)
        backend = self.backend(x)
        if not self.diff_routing and routing_runs_triton(qkv, current_policy()):
            from .backends.triton import routing as fast
            q_r, k_r = fast.region_means(qkv, self.n_win, self.qk_dim)
            top_regions = fast.top_regions
        else:
            q_r, k_r = functional.region_means(qkv, self.n_win, self.qk_dim)
            top_regions = None
        # The Triton kernels route hard: they never read the weights.
        routing = self.route_means(q_r, k_r, weights=backend != 'triton',
                                   top_regions=top_regions)
        out = functional.bi_level_routing_attention(
            qkv, routing, self.n_win, self.num_heads, self.qk_dim, self.scale, self.lepe,
            backend, self.soft_routing, self.kv_down, self.sdpa_policy)
        out = self.wo(out)
        if tracing() or out.shape[1] != H_in or out.shape[2] != W_in:  # see regions.pad_to_multiple
            out = out[:, :H_in, :W_in].contiguous()
        return out

    def route_regions(self, qkv: torch.Tensor):
        """The padded projection ``qkv`` (N, H, W, 2*qk_dim + dim) in region layout,
        routed as :meth:`forward` routes it: ``q`` (N, R, h*w, qk_dim), ``kv`` (N, R,
        h*w, qk_dim + dim), and ``weights`` / ``index`` (N, R, topk)."""
        qd = self.qk_dim
        regions = to_regions(qkv, self.n_win)
        weights, index = self.route_means(*functional.region_means(qkv, self.n_win, qd))
        return regions[..., :qd], regions[..., qd:], weights, index

    def attention_macs(self, x: torch.Tensor) -> dict:
        """Multiply-adds of the routing (``q_r @ k_r^T``) and of the token attention
        for NHWC input ``x`` (projections and LCE are counted as layers)."""
        N, H, W, _ = x.shape
        S = self.n_win
        if self.auto_pad:
            H, W = -(-H // S) * S, -(-W // S) * S
        h, w = H // S, W // S
        R, l = S * S, h * w
        # KV tokens per region after down-sampling: run the pool on a dummy region.
        t = self.region_kv(torch.zeros(1, 1, l, 1), h, w).shape[2]
        return {'routing': N * R * R * self.qk_dim,
                'attention': N * R * l * self.topk * t * (self.qk_dim + self.dim)}


def set_attn_impl(module: nn.Module, impl: str) -> None:
    """Set ``attn_impl`` of every :class:`BiLevelRoutingAttention` inside ``module``
    (``module`` itself included), checked as the constructor checks it; beside
    :func:`mmbiformer.ops.dwconv.set_impl`."""
    impl = normalize_impl(impl)
    for m in module.modules():
        if isinstance(m, BiLevelRoutingAttention):
            m.attn_impl = impl
