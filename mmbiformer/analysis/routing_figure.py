"""Pictures of :mod:`mmbiformer.analysis.routing` records (matplotlib).

Regions are drawn at their image coordinates: a region of (h, w) tokens of a map with
stride s covers (h*s, w*s) pixels from the image's top-left corner, as the model pads
at the bottom and the right. The padding is drawn too, hatched, beyond the image's
right and bottom edges: BRA routes to padded regions like any other (their tokens are
zeros after the projection's bias), and a region routed there is labelled so.
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


def padded_extent(rec: BlockRouting, image_shape) -> tuple:
    """(height, width) in pixels of the image with the model's padding: the canvas."""
    h, w = rec.region_size
    return (max(image_shape[0], rec.n_win * h * rec.stride),
            max(image_shape[1], rec.n_win * w * rec.stride))


def _draw_padding(ax, image_shape, canvas) -> None:
    """Hatch what lies beyond the image (``gid='padding'``)."""
    from matplotlib.patches import Rectangle
    (height, width), (ch, cw) = image_shape, canvas
    strips = [((width, 0), cw - width, ch), ((0, height), width, ch - height)]
    for (x, y), sw, sh in strips:
        if sw > 0 and sh > 0:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), sw, sh, facecolor='0.25',
                                   edgecolor='0.6', hatch='///', lw=0, gid='padding'))


def draw_query(ax, image: np.ndarray, rec: BlockRouting, q: int, n: int = 0,
               asked=None) -> None:
    """One panel: the image with the model's padding (hatched), the region grid, query
    ``q`` of ``rec`` and its region, its routed regions outlined and ranked by weight
    (``padding`` in the label of one that lies wholly in the padding), and its token
    attention (mean over heads) as a heat map over them. ``asked``: the (x, y) pixel
    the user gave, when the title should say it snapped to its token's centre.
    Routed-region outlines carry ``gid='routed-RANK-REGION'``, the query's own region
    ``gid='query-REGION'``, the padding ``gid='padding'``."""
    from matplotlib.patches import Rectangle
    height, width = image.shape[:2]
    canvas = padded_extent(rec, image.shape)
    query = rec.queries[q]
    ax.imshow(image, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    _draw_padding(ax, (height, width), canvas)
    _grid(ax, rec)
    attn = query.attn[n].mean(0).numpy()  # (topk, h, w)
    heat = np.zeros(canvas, np.float32)
    shown = np.zeros(canvas, bool)
    s = rec.stride
    order = np.argsort(-rec.weights[n, query.region].numpy())
    for k in range(rec.topk):
        x0, y0, bw, bh = _region_box(rec, rec.index[n, query.region, k])
        tile = np.kron(attn[k], np.ones((s, s), np.float32))
        y1, x1 = min(y0 + bh, canvas[0]), min(x0 + bw, canvas[1])
        if y1 > y0 and x1 > x0:
            heat[y0:y1, x0:x1] = tile[:y1 - y0, :x1 - x0]
            shown[y0:y1, x0:x1] = True
    if shown.any():
        top = heat[shown].max() or 1.0
        rgba = np.zeros((*canvas, 4), np.float32)
        rgba[..., 0] = 1.0
        rgba[..., 1] = 0.15
        rgba[..., 3] = np.where(shown, 0.15 + 0.7 * heat / top, 0.0)
        ax.imshow(rgba, extent=(-0.5, canvas[1] - 0.5, canvas[0] - 0.5, -0.5))
    in_padding = 0
    for rank, k in enumerate(order):
        region = int(rec.index[n, query.region, k])
        x0, y0, bw, bh = _region_box(rec, region)
        colour = RANK_COLOURS[rank % len(RANK_COLOURS)]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), bw, bh, fill=False, lw=2.2,
                               edgecolor=colour, gid=f'routed-{rank}-{region}'))
        weight = float(rec.weights[n, query.region, k])
        padding = x0 >= width or y0 >= height
        in_padding += padding
        label = f'#{rank + 1} {weight:.2f}' + (' padding' if padding else '')
        ax.text(x0 + 2, y0 + 2, label, color=colour, fontsize=7,
                va='top', ha='left', clip_on=True,
                bbox=dict(facecolor='black', alpha=0.5, pad=1, lw=0))
    x0, y0, bw, bh = _region_box(rec, query.region)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), bw, bh, fill=False, lw=1.5, ls='--',
                           edgecolor='cyan', gid=f'query-{query.region}'))
    y, x = query.position
    ax.plot([(x + 0.5) * s - 0.5], [(y + 0.5) * s - 0.5], marker='*', ms=14,
            color='cyan', mec='black')
    ax.set_xlim(-0.5, canvas[1] - 0.5)
    ax.set_ylim(canvas[0] - 0.5, -0.5)
    cx, cy = int((x + 0.5) * s), int((y + 0.5) * s)
    where = f'query ({cx}, {cy})'
    if asked is not None and tuple(asked) != (cx, cy):
        where = f'query ({asked[0]}, {asked[1]}) -> its token\'s centre ({cx}, {cy})'
    notes = f'\n{in_padding} of {rec.topk} routed regions in the padding (hatched)' \
        if in_padding else ''
    ax.set_title(f'stage {rec.stage} block {rec.block}: {where}, top-{rec.topk} of '
                 f'{rec.n_win}x{rec.n_win}{notes}', fontsize=8)
    ax.axis('off')


def query_figure(image: np.ndarray, rec: BlockRouting, asked=None):
    """A figure with one :func:`draw_query` panel per recorded query (``asked``: the
    (x, y) pixels given for them, for the titles)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(rec.queries)
    canvas = padded_extent(rec, image.shape)
    aspect = canvas[0] / canvas[1]
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5 * aspect + 0.7), squeeze=False)
    for q in range(n):
        draw_query(axes[0, q], image, rec, q, asked=asked[q] if asked else None)
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
        canvas = padded_extent(rec, image.shape)
        ax.imshow(image, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        _draw_padding(ax, (height, width), canvas)
        im = ax.imshow(counts, cmap='magma', alpha=0.6, extent=extent,
                       interpolation='nearest')
        ax.set_xlim(-0.5, canvas[1] - 0.5)
        ax.set_ylim(canvas[0] - 0.5, -0.5)
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
