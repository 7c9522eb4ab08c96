"""The token mixers a BiFormer stage can use, and the one place that builds them.

``'bra'`` (Bi-Level Routing Attention) and ``'global'`` (full attention with LePE) are
BiFormer's own; ``'quadtree'``, ``'shunted'`` and ``'window'`` are the rival ways of
sparsifying attention, so that an ablation changes the attention and nothing else.
Defaults are the official per-stage settings of each method.
"""
from typing import Optional, Sequence

import torch.nn as nn

from .bra import BiLevelRoutingAttention
from .global_attention import GlobalAttentionLePE
from .quadtree import QuadTreeAttention
from .shunted import ShuntedSelfAttention
from .window_attention import WindowAttention


def _bra(dim: int, num_heads: int, *, topk: int, n_win: int, qk_dim: Optional[int] = None,
         side_dwconv: int = 5, auto_pad: bool = True, global_heads: int = 8,
         **bra_kwargs) -> nn.Module:
    return BiLevelRoutingAttention(dim, num_heads=num_heads, n_win=n_win, qk_dim=qk_dim,
                                   topk=topk, side_dwconv=side_dwconv, auto_pad=auto_pad,
                                   **bra_kwargs)


def _global(dim: int, num_heads: int, *, topk: int, side_dwconv: int = 5,
            global_heads: int = 8, **bra_and_region_options) -> nn.Module:
    # Official: its own head count, LePE for topk -2 and none for -1.
    return GlobalAttentionLePE(dim, global_heads, side_dwconv, with_lepe=topk != -1)


# BiFormer's own mixers, built from the block's options (``build_token_mixer``'s
# ``block``).
OWN_MIXERS = {'bra': _bra, 'global': _global}
# type -> (op, default options). A per-stage option is a list of 4, one per stage:
# QuadTree-B's pyramid levels are its models' ``sr_ratios`` (4, 3, 2, 1), top-k 8 at
# every level; Shunted's aggregation rates are (8, 4, 2, 1); windows are Swin's 7.
OTHER_MIXERS = {
    'quadtree': (QuadTreeAttention, dict(levels=(4, 3, 2, 1), topk=8)),
    'shunted': (ShuntedSelfAttention, dict(sr_ratio=(8, 4, 2, 1))),
    'window': (WindowAttention, dict(window_size=7)),
}
PER_STAGE_OPTIONS = ('levels', 'sr_ratio')
ATTN_TYPES = tuple(OWN_MIXERS) + tuple(OTHER_MIXERS)


def resolve_attn_types(attn_types: Optional[Sequence[str]], topks: Sequence[int]) -> list:
    """The mixer of each of the 4 stages: ``attn_types`` as given, or from the arch's
    ``topks`` (BiFormer's own rule: ``topk > 0`` routes, -1 / -2 attend globally)."""
    if attn_types is None:
        return ['bra' if k > 0 else 'global' for k in topks]
    types = [attn_types] * 4 if isinstance(attn_types, str) else list(attn_types)
    if len(types) != 4:
        raise ValueError(f'attn_types needs 4 entries (one per stage), got {attn_types!r}')
    for i, (t, k) in enumerate(zip(types, topks)):
        if t not in ATTN_TYPES:
            raise ValueError(f'attn_types[{i}] = {t!r} is not a token mixer; choose from '
                             f'{ATTN_TYPES}')
        if t == 'bra' and k <= 0:
            raise ValueError(f"attn_types[{i}] = 'bra' needs a routing top-k, but the "
                             f"arch's topks[{i}] is {k}; give the arch a topk >= 1 there")
    return types


def check_attn_cfg(attn_cfg: Optional[dict]) -> dict:
    """Options per mixer type, e.g. ``dict(quadtree=dict(levels=(3, 3, 2, 1)))``."""
    attn_cfg = dict(attn_cfg or {})
    for name, options in attn_cfg.items():
        if name not in OTHER_MIXERS:
            raise ValueError(f'attn_cfg: {name!r} takes no options here; keys are '
                             f'{sorted(OTHER_MIXERS)} (BRA options go in bra_cfg)')
        for key in PER_STAGE_OPTIONS:
            value = options.get(key)
            if isinstance(value, (list, tuple)) and len(value) != 4:
                raise ValueError(f'attn_cfg.{name}.{key} needs one value per stage '
                                 f'(4), got {value!r}')
    return attn_cfg


def build_token_mixer(attn_type: str, dim: int, num_heads: int, stage: int,
                      attn_cfg: Optional[dict] = None, **block) -> nn.Module:
    """The token mixer ``attn_type`` of a block of stage ``stage`` (0-3).

    BiFormer's own (``'bra'``, ``'global'``) take the block's options ``block``:
    ``topk``, ``n_win``, ``qk_dim``, ``side_dwconv``, ``auto_pad``, ``global_heads``
    and BRA's other keyword arguments. ``'quadtree'``, ``'shunted'`` and ``'window'``
    take their defaults, updated by ``attn_cfg[attn_type]``, per-stage values picked.
    """
    if attn_type in OWN_MIXERS:
        return OWN_MIXERS[attn_type](dim, num_heads, **block)
    op, defaults = OTHER_MIXERS[attn_type]
    options = dict(defaults, **(attn_cfg or {}).get(attn_type, {}))
    for key in PER_STAGE_OPTIONS:
        if isinstance(options.get(key), (list, tuple)):
            options[key] = options[key][stage]
    try:
        return op(dim, num_heads, **options)
    except (TypeError, ValueError) as e:
        raise ValueError(f'stage {stage + 1} ({attn_type!r}, dim {dim}, {num_heads} '
                         f'heads): {e}') from None
