"""Where BiFormer looks: the routing of every BRA block, captured by forward hooks.

    with capture_routing(backbone, queries=[(120, 80)]) as records:
        backbone(image)          # (1, 3, H, W), any size
    rec = records[(1, 0)]        # stage 1, block 0: a BlockRouting

The model code carries no visualisation branch: a hook on each
:class:`~mmbiformer.ops.BiLevelRoutingAttention` recomputes, from the block's input
and with the block's own weights, what the block routes (:meth:`route_regions`, as
the reference and SDPA forwards do; the Triton forward routes the same region means)
and, for the chosen query positions, the token attention of the reference path. So it
works whatever ``attn_impl`` runs the forward.

Shapes (N images; S = ``n_win``; R = S*S regions; k = ``topk``; (h, w) tokens per
region; m heads): ``index`` and ``weights`` are (N, R, k) (regions numbered row-major
over the S x S grid); each query's ``attn`` is (N, m, k, h, w): its softmax attention
over the tokens of its k routed regions, in the order of ``index``.
"""
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..ops.attention import heads
from ..ops.bra import BiLevelRoutingAttention
from ..ops.regions import pad_to_multiple


class RoutingError(ValueError):
    """A request the routing capture cannot serve (no BiFormer, no BRA there)."""


@dataclass
class QueryAttention:
    """The token attention of one query position (in the stage's feature map)."""
    position: Tuple[int, int]  # (y, x) in the stage's feature map
    region: int                # its own region (row-major over the S x S grid)
    attn: torch.Tensor         # (N, heads, topk, h, w), over the routed regions' tokens


@dataclass
class BlockRouting:
    """What one BRA block routed, as plain tensors (see the module doc for shapes)."""
    stage: int
    block: int
    n_win: int
    topk: int
    stride: int                     # image pixels per feature-map token
    map_size: Tuple[int, int]       # (H, W) of the block's input, before padding
    padded_size: Tuple[int, int]    # (H, W) after auto-padding to multiples of n_win
    region_size: Tuple[int, int]    # (h, w) tokens per region
    index: torch.Tensor             # (N, R, topk) routed regions of each region
    weights: torch.Tensor           # (N, R, topk) routing weights (softmax of kept logits)
    queries: List[QueryAttention] = field(default_factory=list)


def find_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The BiFormer inside a classifier / detector / segmentor, or the model itself."""
    from ..models import BiFormer
    if isinstance(model, BiFormer):
        return model
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, BiFormer):
        return backbone
    raise RoutingError(f'no BiFormer backbone in {type(model).__name__} (backbone: '
                     f'{type(backbone).__name__ if backbone is not None else "none"}); '
                     f'routing can only be shown for BiFormer models')


def bra_blocks(backbone) -> Dict[Tuple[int, int], BiLevelRoutingAttention]:
    """(stage, block) -> the block's BRA, for every block that routes."""
    return {(s, b): blk.attn for s, stage in enumerate(backbone.stages)
            for b, blk in enumerate(stage) if isinstance(blk.attn, BiLevelRoutingAttention)}


def check_block(backbone, stage: int, block: int) -> None:
    """A clear error for a stage without BRA or a block index out of range."""
    if not 0 <= stage < len(backbone.stages):
        raise RoutingError(f'stage {stage} out of range: BiFormer has stages 0-'
                         f'{len(backbone.stages) - 1}')
    routed = sorted({s for s, _ in bra_blocks(backbone)})
    if stage not in routed:
        raise RoutingError(f'stage {stage} has no bi-level routing (it uses global '
                         f'attention); stages with BRA: {routed}')
    depth = len(backbone.stages[stage])
    if not 0 <= block < depth:
        raise RoutingError(f'block {block} out of range: stage {stage} has {depth} blocks '
                         f'(0-{depth - 1})')


def stage_stride(stage: int) -> int:
    return 4 * 2 ** stage


@torch.no_grad()
def _record(bra: BiLevelRoutingAttention, x: torch.Tensor, stage: int, block: int,
            queries_px: Sequence[Tuple[int, int]]) -> BlockRouting:
    """Recompute the block's routing from its input x (N, H, W, C), as its forward."""
    N, H, W, _ = x.shape
    S, qd = bra.n_win, bra.qk_dim
    xp = pad_to_multiple(x, S) if bra.auto_pad else x
    qkv = bra.qkv(xp)
    Hp, Wp = qkv.shape[1:3]
    h, w = Hp // S, Wp // S
    q, kv, weights, index = bra.route_regions(qkv)
    stride = stage_stride(stage)
    rec = BlockRouting(stage, block, S, bra.topk, stride, (H, W), (Hp, Wp), (h, w),
                       index.cpu(), weights.float().cpu())
    if not queries_px:
        return rec
    kv = bra.region_kv(kv, h, w)
    if kv.shape[2] != h * w:
        raise RoutingError('token attention maps need KV at full resolution '
                         f'(kv_downsample_mode={bra.kv_downsample_mode!r})')
    batch = torch.arange(N, device=x.device).view(N, 1)
    for px, py in queries_px:
        y, x_ = min(py // stride, H - 1), min(px // stride, W - 1)
        r = (y // h) * S + x_ // w
        tok = (y % h) * w + x_ % w
        k_sel = kv[batch, index[:, r]][..., :qd]  # (N, topk, h*w, qd)
        qt = heads(q[:, r:r + 1, tok:tok + 1], bra.num_heads)  # (N, m, 1, c)
        kt = heads(k_sel.reshape(N, 1, -1, qd), bra.num_heads)  # (N, m, topk*h*w, c)
        attn = F.softmax((qt * bra.scale) @ kt.transpose(-2, -1), dim=-1)
        attn = attn.reshape(N, bra.num_heads, bra.topk, h, w).float().cpu()
        rec.queries.append(QueryAttention((y, x_), r, attn))
    return rec


@contextmanager
def capture_routing(model: torch.nn.Module, queries: Sequence[Tuple[int, int]] = (),
                    blocks: Optional[Sequence[Tuple[int, int]]] = None):
    """Record every BRA block's routing (or ``blocks``: (stage, block) pairs) during
    the forward passes run inside the ``with``; yields ``{(stage, block):
    BlockRouting}`` (the last pass). ``queries``: (x, y) image pixels whose token
    attention is recorded too."""
    backbone = find_backbone(model)
    targets = bra_blocks(backbone)
    if blocks is not None:
        for s, b in blocks:
            check_block(backbone, s, b)
        targets = {key: targets[key] for key in blocks}
    records: Dict[Tuple[int, int], BlockRouting] = {}
    handles = []
    for (s, b), bra in targets.items():
        def hook(module, args, output, s=s, b=b):
            records[(s, b)] = _record(module, args[0], s, b, queries)
        handles.append(bra.register_forward_hook(hook))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def routing_counts(rec: BlockRouting) -> torch.Tensor:
    """(N, S, S): how many regions route to each region."""
    N, R, _ = rec.index.shape
    counts = torch.zeros(N, R)
    counts.scatter_add_(1, rec.index.reshape(N, -1), torch.ones(N, rec.index[0].numel()))
    return counts.view(N, rec.n_win, rec.n_win)


def routing_entropy(rec: BlockRouting) -> float:
    """Mean entropy (nats) of the routing weights over regions and images."""
    w = rec.weights.clamp_min(1e-12)
    return float(-(w * w.log()).sum(-1).mean())
