"""Pictures of :mod:`mmbiformer.analysis.routing` records (matplotlib).

Regions are drawn at their image coordinates: a region of (h, w) tokens of a map with
stride s covers (h*s, w*s) pixels from the image's top-left corner, as the model pads
at the bottom and the right; parts of regions in the padding fall outside the image
and are clipped.
"""
from typing import List, Sequence

import numpy as np

from .routing import BlockRouting, routing_counts, routing_entropy

RANK_COLOURS = ['#ff2d2d', '#ff9f1a', '#ffe11a', '#4cd137', '#00a8ff', '#9c88ff',
                '#e84393', '#ffffff']


def _region_box(rec: BlockRouting, region: int):
    """(x0, y0, width, height) in image pixels of region ``region``."""
    h, w = rec.region_size
    row, col = divmod(int(region), rec.n_win)
    return col * w * rec.stride, row * h * rec.stride, w * rec.stride, h * rec.stride


def _grid(ax, rec: BlockRouting) -> None:
    h, w = rec.region_size
    for i in range(1, rec.n_win):
        ax.axhline(i * h * rec.stride - 0.5, color='white', lw=0.5, alpha=0.6)
        ax.axvline(i * w * rec.stride - 0.5, color='white', lw=0.5, alpha=0.6)


def draw_query(ax, image: np.ndarray, rec: BlockRouting, q: int, n: int = 0) -> None:
    """One panel: the image, the region grid, query ``q`` of ``rec`` and its region,
    its routed regions outlined and ranked by weight, and its token attention (mean
    over heads) as a heat map over them. Routed-region outlines carry
    ``gid='routed-RANK-REGION'``, the query's own region ``gid='query-REGION'``."""
    from matplotlib.patches import Rectangle
    height, width = image.shape[:2]
    query = rec.queries[q]
    ax.imshow(image)
    _grid(ax, rec)
    attn = query.attn[n].mean(0).numpy()  # (topk, h, w)
    heat = np.zeros((height, width), np.float32)
    shown = np.zeros((height, width), bool)
    s = rec.stride
    order = np.argsort(-rec.weights[n, query.region].numpy())
    for k in range(rec.topk):
        x0, y0, bw, bh = _region_box(rec, rec.index[n, query.region, k])
        tile = np.kron(attn[k], np.ones((s, s), np.float32))
        y1, x1 = min(y0 + bh, height), min(x0 + bw, width)
        if y1 > y0 and x1 > x0:
            heat[y0:y1, x0:x1] = tile[:y1 - y0, :x1 - x0]
            shown[y0:y1, x0:x1] = True
    if shown.any():
        top = heat[shown].max() or 1.0
        rgba = np.zeros((height, width, 4), np.float32)
        rgba[..., 0] = 1.0
        rgba[..., 1] = 0.15
        rgba[..., 3] = np.where(shown, 0.15 + 0.7 * heat / top, 0.0)
        ax.imshow(rgba)
    for rank, k in enumerate(order):
        region = int(rec.index[n, query.region, k])
        x0, y0, bw, bh = _region_box(rec, region)
        colour = RANK_COLOURS[rank % len(RANK_COLOURS)]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), bw, bh, fill=False, lw=2.2,
                               edgecolor=colour, gid=f'routed-{rank}-{region}'))
        weight = float(rec.weights[n, query.region, k])
        ax.text(x0 + 2, y0 + 2, f'#{rank + 1} {weight:.2f}', color=colour, fontsize=7,
                va='top', ha='left', clip_on=True,
                bbox=dict(facecolor='black', alpha=0.5, pad=1, lw=0))
    x0, y0, bw, bh = _region_box(rec, query.region)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), bw, bh, fill=False, lw=1.5, ls='--',
                           edgecolor='cyan', gid=f'query-{query.region}'))
    y, x = query.position
    ax.plot([(x + 0.5) * s - 0.5], [(y + 0.5) * s - 0.5], marker='*', ms=14,
            color='cyan', mec='black')
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_title(f'stage {rec.stage} block {rec.block}: query ({(x + 0.5) * s:.0f}, '
                 f'{(y + 0.5) * s:.0f}), top-{rec.topk} of {rec.n_win}x{rec.n_win}',
                 fontsize=8)
    ax.axis('off')


def query_figure(image: np.ndarray, rec: BlockRouting):
    """A figure with one :func:`draw_query` panel per recorded query."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(rec.queries)
    aspect = image.shape[0] / image.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5 * aspect + 0.5), squeeze=False)
    for q in range(n):
        draw_query(axes[0, q], image, rec, q)
    fig.tight_layout()
    return fig


def stats_figure(image: np.ndarray, records: Sequence[BlockRouting]):
    """Per stage: how often each region is routed to, summed over the stage's blocks
    and every query region, drawn over the image; titles give the mean entropy."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    per_stage = stage_entropies(records)
    fig, axes = plt.subplots(1, len(per_stage), figsize=(4.5 * len(per_stage), 4.2),
                             squeeze=False)
    height, width = image.shape[:2]
    for ax, (stage, blocks, entropy) in zip(axes[0], per_stage):
        recs = [r for r in records if r.stage == stage]
        counts = sum(routing_counts(r)[0] for r in recs).numpy()
        rec = recs[0]
        h, w = rec.region_size
        extent = (-0.5, rec.n_win * w * rec.stride - 0.5,
                  rec.n_win * h * rec.stride - 0.5, -0.5)
        ax.imshow(image)
        im = ax.imshow(counts, cmap='magma', alpha=0.6, extent=extent,
                       interpolation='nearest')
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_title(f'stage {stage}: times routed to ({blocks} blocks)\nmean routing '
                     f'entropy {entropy:.3f} nats (max {np.log(rec.topk):.3f})', fontsize=8)
        ax.axis('off')
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return fig


def stage_entropies(records: Sequence[BlockRouting]) -> List[tuple]:
    """(stage, blocks, mean routing entropy) per stage."""
    out = []
    for stage in sorted({r.stage for r in records}):
        recs = [r for r in records if r.stage == stage]
        out.append((stage, len(recs), float(np.mean([routing_entropy(r) for r in recs]))))
    return out
