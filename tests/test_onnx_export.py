"""ONNX export with dynamic sizes, run in onnxruntime against PyTorch (tiny models)."""
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch

from mmbiformer.deploy import ExportError, compare, exportable_model, export_onnx
from mmbiformer.deploy.onnx_export import require_deploy_packages
from mmbiformer.utils.launch import load_config
from helpers import ROOT, TINY_ARCH, build_model

# tools/setup.sh installs the deploy extras (CI too): without them these tests fail
# rather than skip, so that a broken install cannot pass unseen.
import onnxruntime  # noqa: E402,F401
import onnxscript  # noqa: E402,F401
pytestmark = pytest.mark.slow  # each export records the model with torch.export

DIMS = TINY_ARCH['embed_dims']


def _tiny_cfg(config: str):
    """The config with the tiny arch and the neck / heads fitted to its widths."""
    cfg = load_config(osp.join(ROOT, config))
    cfg.model.backbone.update(arch=TINY_ARCH, init_cfg=None)
    scope = cfg.default_scope
    if scope == 'mmpretrain':
        cfg.model.head.in_channels = DIMS[-1]
    elif scope == 'mmseg':
        cfg.model.decode_head.in_channels = DIMS
        cfg.model.auxiliary_head.in_channels = DIMS[2]
    else:
        cfg.model.neck.in_channels = DIMS
    return cfg


def _tiny(config: str):
    cfg = _tiny_cfg(config)
    torch.manual_seed(0)
    return exportable_model(build_model(cfg).eval(), cfg.default_scope)


def _exported(tmp_path_factory, config):
    module, _, names = _tiny(config)
    path = str(tmp_path_factory.mktemp('onnx') / 'model.onnx')
    export_onnx(module, torch.rand(2, 3, 224, 224) * 255, path, names, dynamic=True)
    return module, path


def _routing_margin(module, x) -> float:
    """Smallest gap, over all BRA blocks and regions, between the last kept and the
    first dropped routing logit, relative to the largest logit, counting only regions whose keys differ (fully padded
    regions are identical, so which of them is kept changes nothing)."""
    from mmbiformer.ops.bra import BiLevelRoutingAttention
    margins = []

    def measure(m):
        route = m.route_means

        def wrapped(q_r, k_r, **kwargs):
            logits = (q_r * m.scale) @ k_r.transpose(-2, -1)
            top = logits.topk(m.topk + 1, dim=-1) if m.topk < logits.shape[-1] else None
            if top is not None:
                kept, dropped = top.indices[..., -2], top.indices[..., -1]
                same = torch.gather(k_r, 1, kept[..., None].expand(-1, -1, k_r.shape[-1]))
                other = torch.gather(k_r, 1, dropped[..., None].expand(-1, -1, k_r.shape[-1]))
                gap = top.values[..., -2] - top.values[..., -1]
                differ = (same - other).abs().amax(-1) > 1e-6
                if differ.any():  # relative to the logits' size (tiny at random init)
                    size = logits.abs().amax().clamp_min(1e-30)
                    margins.append((gap[differ].min() / size).item())
            return route(q_r, k_r, **kwargs)
        m.route_means = wrapped
        return route

    bras = [m for m in module.modules() if isinstance(m, BiLevelRoutingAttention)]
    originals = [measure(m) for m in bras]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for m, route in zip(bras, originals):
            m.route_means = route
    return min(margins, default=float('inf'))


def _input_without_ties(module, shape, seed=0):
    """A random image whose routing has no near-ties: PyTorch and onnxruntime differ in
    the last bits, which could flip a near-tied top-k choice and change the output."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(20):
        x = torch.rand(*shape, generator=gen) * 255
        if _routing_margin(module, x) > 1e-4:  # float32 rounding: ~1e-7
            return x
    raise AssertionError(f'no input without routing near-ties found for {shape}')


def _check(module, path, size, batch=1, tol=1e-4):
    import onnxruntime as ort
    x = _input_without_ties(module, (batch, 3, *size))
    with torch.no_grad():
        ref = module(x)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    outs = session.run(None, {'image': x.numpy()})
    refs = ref if isinstance(ref, tuple) else (ref, )
    assert [o.shape for o in outs] == [tuple(r.shape) for r in refs]
    diff = compare(ref, outs)
    assert diff['rel'] < tol, (size, diff)
    return outs


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    return _exported(tmp_path_factory, 'configs/cls/biformer_t_in1k.py')


@pytest.mark.parametrize('size,batch', [((224, 224), 1), ((197, 263), 2), ((96, 352), 1)])
def test_classifier_one_file_any_size(classifier, size, batch):
    module, path = classifier
    outs = _check(module, path, size, batch)
    assert outs[0].shape == (batch, 1000)


def test_graph_has_standard_operators_only(classifier):
    import onnx
    model = onnx.load(classifier[1])
    ops = {n.op_type for n in model.graph.node}
    assert {'TopK', 'MatMul', 'Softmax', 'Conv'} <= ops
    assert all(n.domain in ('', 'ai.onnx') for n in model.graph.node), \
        {n.domain for n in model.graph.node}


@pytest.fixture(scope='module')
def segmentor(tmp_path_factory):
    return _exported(tmp_path_factory, 'configs/seg/upernet_biformer_t.py')


@pytest.fixture(scope='module')
def detector(tmp_path_factory):
    return _exported(tmp_path_factory, 'configs/det/maskrcnn_biformer_t.py')


def test_segmentor_at_sizes_off_the_grid(segmentor):
    module, path = segmentor
    for size in ((75, 101), (130, 97)):
        outs = _check(module, path, size)
        assert outs[0].shape == (1, 150, *size)


def test_detector_backbone_and_neck(detector):
    module, path = detector
    outs = _check(module, path, (97, 131))
    assert len(outs) == 5 and outs[0].shape[1] == 256


# -- against each toolbox's own inference path, from an image file --------------------
def _toolbox_sample(config, module, tmp_path, hw=None):
    """An image file (random, without routing near-ties) through the config's own test
    pipeline, collated as its loader does. ``hw``: the test Resize's scale is set to
    the image's size, so that it keeps the image as it is (small, fast)."""
    import cv2
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import init_default_scope
    cfg = _tiny_cfg(config)
    init_default_scope(cfg.default_scope)
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline
                if t['type'] != 'LoadAnnotations']
    if hw:
        for t in pipeline:
            if t['type'] == 'Resize':
                t['scale'] = (hw[1], hw[0])
    transform = Compose(pipeline)
    rng = torch.Generator().manual_seed(0)
    for i in range(20):
        img = (torch.rand(*(hw or (240, 300)), 3, generator=rng) * 255).to(torch.uint8)
        path = str(tmp_path / f'image{i}.png')
        cv2.imwrite(path, img.numpy())  # BGR on disk, as every loader reads it
        data = pseudo_collate([transform(dict(img_path=path))])
        x = data['inputs'][0][None].float()  # the pipeline's pixels, BGR, 0-255
        if _routing_margin(module, x) > 1e-4:
            return data, x
    raise AssertionError('no image without routing near-ties found')


def _onnx(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {'image': x.numpy()})


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return ((a - b).norm() / b.norm()).item()


def test_classifier_equals_mmpretrain_inference(classifier, tmp_path):
    """Scores of mmpretrain's test_step (its data preprocessor: BGR->RGB, mean, std)
    against softmax of the ONNX logits on the same pipeline output."""
    module, path = classifier
    data, x = _toolbox_sample('configs/cls/biformer_t_in1k.py', module, tmp_path)
    with torch.no_grad():
        want = module.model.test_step(data)[0].pred_score
    got = torch.from_numpy(_onnx(path, x)[0][0]).softmax(-1)
    assert _rel(got, want) < 1e-4


def test_segmentor_equals_mmseg_inference(segmentor, tmp_path):
    """mmseg's test_step (its SegDataPreProcessor's bgr_to_rgb, mean, std) against the
    ONNX logits resized to the image as mmseg's post-processing resizes them."""
    import torch.nn.functional as F
    module, path = segmentor
    data, x = _toolbox_sample('configs/seg/upernet_biformer_t.py', module, tmp_path,
                              hw=(96, 128))
    with torch.no_grad():
        want = module.model.test_step(data)[0].seg_logits.data
    got = torch.from_numpy(_onnx(path, x)[0])
    got = F.interpolate(got, size=want.shape[1:], mode='bilinear',
                        align_corners=module.model.decode_head.align_corners)[0]
    assert _rel(got, want) < 1e-4


def test_detector_features_equal_mmdet_preprocessing(detector, tmp_path):
    """The FPN maps of mmdet's own data preprocessor (bgr_to_rgb, mean, std; the image
    is a multiple of 32, so nothing is padded) and the model, against ONNX."""
    module, path = detector
    data, x = _toolbox_sample('configs/det/maskrcnn_biformer_t.py', module, tmp_path,
                              hw=(96, 128))
    with torch.no_grad():
        inputs = module.model.data_preprocessor(data, False)['inputs']
        want = module.model.extract_feat(inputs)
    for got, ref in zip(_onnx(path, x), want):
        assert _rel(got, ref) < 1e-4


@pytest.mark.parametrize('config', ['configs/cls/biformer_t_in1k.py',
                                    'configs/det/retinanet_biformer_t.py'])
def test_export_wrapper_is_in_eval_mode(config):
    """Every module of what is exported is in eval mode (torch's exporter otherwise
    warns 'Exporting a model while it is in training mode')."""
    module = _tiny(config)[0]
    assert not any(m.training for m in module.modules())


def test_sliding_window_segmentor_is_refused():
    cfg = _tiny_cfg('configs/seg/upernet_biformer_t.py')
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    with pytest.raises(ExportError, match='model.test_cfg.mode=whole'):
        exportable_model(build_model(cfg).eval(), 'mmseg')


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import fails
    with pytest.raises(ExportError, match=r'onnxruntime.*requirements/deploy.txt'):
        require_deploy_packages()


def _tool(*args):
    proc = subprocess.run([sys.executable, 'tools/deploy/export_onnx.py', *args], cwd=ROOT,
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def test_tool_errors(tmp_path):
    code, out = _tool('configs/cls/biformer_t_in1k.py', 'none', '--out',
                      str(tmp_path / 'm.onnx'), '--opset', '9')
    assert code != 0 and 'Traceback' not in out and 'unknown opset 9' in out
    code, out = _tool('configs/cls/biformer_t_in1k.py', 'none', '--out',
                      str(tmp_path / 'm.onnx'), '--check', str(tmp_path / 'nope.jpg'))
    assert code != 0 and 'Traceback' not in out and 'image not found' in out
    # A file that is no image fails before the export (which takes a minute), and
    # --out into a folder not there yet is created rather than failing after it.
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    start = time.time()
    code, out = _tool('configs/cls/biformer_t_in1k.py', 'none', '--out',
                      str(tmp_path / 'new' / 'm.onnx'), '--check', str(text))
    assert code != 0 and 'Traceback' not in out
    assert f'--check image {text}: cannot decode it as an image' in out
    assert time.time() - start < 30 and not (tmp_path / 'new' / 'm.onnx').exists()
    # Weights that cannot be had (offline): the tool's own way to go on, not training's.
    from helpers import tool_error
    out = tool_error('tools/deploy/export_onnx.py', 'configs/cls/biformer_t_in1k.py',
                     'http://127.0.0.1:9/x/model.pth', '--out', str(tmp_path / 'm.onnx'))
    assert 'download failed' in out and 'pass none as CHECKPOINT' in out
