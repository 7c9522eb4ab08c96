"""Routing capture (mmbiformer.analysis.routing), its pictures, and the tool."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch

from helpers import ROOT, TINY_ARCH
from mmbiformer.analysis.routing import (RoutingError, bra_blocks, capture_routing,
                                         check_block, find_backbone, routing_counts)
from mmbiformer.models import BiFormer
from mmbiformer.ops.regions import pad_to_multiple, to_regions


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return BiFormer(TINY_ARCH, n_win=4, auto_pad=True).eval()


def test_captured_indices_are_those_route_returns(tiny):
    x = torch.randn(1, 3, 75, 101)  # not a multiple of anything: padding in play
    inputs = {}
    hooks = [bra.register_forward_hook(
        lambda m, a, o, key=key: inputs.__setitem__(key, a[0]))
        for key, bra in bra_blocks(tiny).items()]
    with capture_routing(tiny, queries=[(40, 30)]) as records, torch.no_grad():
        tiny(x)
    for h in hooks:
        h.remove()
    assert set(records) == set(bra_blocks(tiny)) == {(0, 0), (1, 0), (2, 0)}
    for key, rec in records.items():
        bra = bra_blocks(tiny)[key]
        regions = to_regions(bra.qkv(pad_to_multiple(inputs[key], bra.n_win)), bra.n_win)
        qd = bra.qk_dim
        with torch.no_grad():
            weights, index = bra.route(regions[..., :qd], regions[..., qd:2 * qd])
        assert torch.equal(rec.index, index)
        torch.testing.assert_close(rec.weights, weights)
        assert rec.map_size == tuple(inputs[key].shape[1:3])
        attn = rec.queries[0].attn  # (N, heads, topk, h, w)
        assert attn.shape == (1, bra.num_heads, bra.topk, *rec.region_size)
        torch.testing.assert_close(attn.sum((2, 3, 4)), torch.ones(1, bra.num_heads))
        assert routing_counts(rec).sum() == rec.index.numel()


def test_drawn_regions_are_the_captured_ones(tiny):
    from mmbiformer.analysis.routing_figure import query_figure
    image = np.full((75, 101, 3), 128, np.uint8)
    x = torch.randn(1, 3, 75, 101)
    with capture_routing(tiny, queries=[(10, 12), (90, 60)], blocks=[(1, 0)]) as rec, \
            torch.no_grad():
        tiny(x)
    fig = query_figure(image, rec[(1, 0)])
    for ax, query in zip(fig.axes, rec[(1, 0)].queries):
        routed = [p.get_gid().split('-') for p in ax.patches
                  if (p.get_gid() or '').startswith('routed-')]
        assert sorted(int(r) for _, _, r in routed) == sorted(
            rec[(1, 0)].index[0, query.region].tolist())
        weights = rec[(1, 0)].weights[0, query.region]
        by_rank = [int(r) for _, _, r in sorted(routed, key=lambda g: int(g[1]))]
        ranked = rec[(1, 0)].index[0, query.region][weights.argsort(descending=True)]
        assert by_rank == ranked.tolist()
        own = [p.get_gid() for p in ax.patches if (p.get_gid() or '').startswith('query-')]
        assert own == [f'query-{query.region}']


def test_padding_regions_are_drawn_and_named():
    """A 70x90 image at stride 8 with 4x4 regions of 3x4 tokens: the padded canvas is
    96x128. A query routed to the bottom-right region (wholly padding) and to region 0:
    the padding is hatched, the routed outline lies inside the axes, its label and the
    title say padding, and the title says where the asked pixel snapped."""
    from mmbiformer.analysis.routing import BlockRouting, QueryAttention
    from mmbiformer.analysis.routing_figure import query_figure
    rec = BlockRouting(stage=1, block=0, n_win=4, topk=2, stride=8, map_size=(9, 12),
                       padded_size=(12, 16), region_size=(3, 4),
                       index=torch.tensor([[[15, 0]] * 16]),
                       weights=torch.tensor([[[0.6, 0.4]] * 16]),
                       queries=[QueryAttention((7, 10), 10, torch.full((1, 2, 2, 3, 4),
                                                                       1 / 24))])
    fig = query_figure(np.full((70, 90, 3), 128, np.uint8), rec, asked=[(80, 60)])
    ax = fig.axes[0]
    assert [p.get_gid() for p in ax.patches if p.get_gid() == 'padding'] == ['padding'] * 2
    outline = next(p for p in ax.patches if p.get_gid() == 'routed-0-15')
    x0, y0 = outline.get_xy()
    assert (x0 + 0.5, y0 + 0.5) == (96, 72)  # region (3, 3): 32 x 24 px, past the image
    assert (outline.get_width(), outline.get_height()) == (32, 24)
    assert ax.get_xlim() == (-0.5, 127.5) and ax.get_ylim() == (95.5, -0.5)
    labels = [t.get_text() for t in ax.texts]
    assert '#1 0.60 padding' in labels and '#2 0.40' in labels
    title = ax.get_title()
    assert 'query (80, 60) -> its token\'s centre (84, 60)' in title
    assert '1 of 2 routed regions in the padding' in title


def test_errors(tiny):
    with pytest.raises(RoutingError, match='global attention'):
        check_block(tiny, 3, 0)
    with pytest.raises(RoutingError, match='block 5 out of range'):
        check_block(tiny, 1, 5)
    with pytest.raises(RoutingError, match='no BiFormer backbone'):
        find_backbone(torch.nn.Linear(2, 2))


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location(
        'visualize_routing', osp.join(ROOT, 'tools', 'analysis_tools', 'visualize_routing.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def checkpoint(tool, tmp_path_factory):
    from mmbiformer.utils.launch import load_config
    config = osp.join(ROOT, 'configs', 'det', 'retinanet_biformer_t.py')
    model = tool.build_model(load_config(config))
    path = tmp_path_factory.mktemp('ckpt') / 'model.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    image = tmp_path_factory.mktemp('img') / 'image.jpg'
    import cv2
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (90, 130, 3),
                                                             dtype=np.uint8))
    return config, str(path), str(image)


def test_tool_writes_a_png(tool, checkpoint, tmp_path, capsys):
    config, ckpt, image = checkpoint
    out = tmp_path / 'routing.png'
    tool.main([config, ckpt, image, '--query', '20', '30', '--query', '100', '70',
               '--stage', '1', '--out', str(out)])
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    stats = tmp_path / 'not' / 'there' / 'stats.png'  # the folder is created up front
    tool.main([config, ckpt, image, '--stats', '--out', str(stats)])
    text = capsys.readouterr().out
    assert stats.is_file() and 'stage 2:' in text and 'mean routing entropy' in text


def test_tool_resizes_large_images(tool, checkpoint, tmp_path, capsys):
    """Above --max-side the image is resized down (the capture's memory grows with the
    square of the region size: a 5000x5000 image needed 80 GB); queries stay in the
    given image's pixels."""
    config, ckpt, image = checkpoint
    out = tmp_path / 'small.png'
    tool.main([config, ckpt, image, '--max-side', '64', '--query', '129', '89',
               '--out', str(out)])
    assert '130x90 resized to 64x44 (--max-side 64)' in capsys.readouterr().out
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(SystemExit, match='outside the image'):
        tool.cli([config, ckpt, image, '--max-side', '64', '--query', '130', '10',
                  '--out', str(out)])


@pytest.mark.parametrize('args,message', [
    (['--query', '500', '10'], 'outside the image'),
    (['--stage', '3'], 'global attention'),
    (['--stage', '0', '--block', '9'], 'block 9 out of range'),
])
def test_tool_errors(tool, checkpoint, tmp_path, args, message):
    config, ckpt, image = checkpoint
    with pytest.raises(SystemExit) as e:
        tool.cli([config, ckpt, image, '--out', str(tmp_path / 'x.png')] + args)
    assert message in str(e.value)
