"""ONNX export with input sizes that stay dynamic in the graph.

What is exported, per task (the image tensor is float32 N x 3 x H x W, pixel values
0-255 in the channel order mmcv reads images, BGR; the graph applies the config's
channel flip, mean and std):

* classification: the whole classifier, to logits;
* segmentation: backbone, neck and decode head, to per-class logits resized to the
  input size (as the segmentor's whole-image inference before its arg-max);
* detection: backbone and neck, to the FPN maps. Dense and RoI heads decode boxes with
  operators (NMS, RoIAlign) that need mmdeploy's custom ONNX operators.

The graph is recorded by ``torch.export`` (the ONNX exporter's ``dynamo`` path) with the
batch, height and width dynamic, so BRA's padding, region split and cropping are
computed from the input size inside the graph (``mmbiformer.ops.regions.pad_to_multiple``
pads unconditionally while a graph is recorded). BRA runs its reference path there:
TopK, Gather and MatMul, standard operators that onnxruntime's CPU provider runs.
"""
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Opsets the exporter writes (torch's ONNX exporter converts down to 17 where it can).
OPSETS = tuple(range(17, 24))
DEPLOY_EXTRA = "pip install -r requirements/deploy.txt (or pip install 'mmbiformer[deploy]')"


class ExportError(Exception):
    """A model or option that cannot be exported, with the reason and the fix."""


def require_deploy_packages(names: Sequence[str] = ('onnx', 'onnxscript', 'onnxruntime')):
    missing = []
    for name in names:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f'ONNX export needs {", ".join(missing)}, which '
                          f'{"is" if len(missing) == 1 else "are"} not installed: '
                          f'{DEPLOY_EXTRA}')


def check_opset(opset: int) -> None:
    if opset not in OPSETS:
        raise ExportError(f'unknown opset {opset}: use one of {OPSETS[0]}..{OPSETS[-1]}')


def _bin_matrix(size, bins: int, ref: torch.Tensor) -> torch.Tensor:
    """(bins, size) averaging weights of adaptive average pooling along one axis:
    bin i covers [floor(i*size/bins), ceil((i+1)*size/bins)), as PyTorch defines it."""
    i = torch.arange(bins, device=ref.device)
    start = (i * size) // bins
    end = ((i + 1) * size + bins - 1) // bins
    pos = torch.arange(size, device=ref.device)
    inside = (pos[None] >= start[:, None]) & (pos[None] < end[:, None])
    return inside.to(ref.dtype) / (end - start)[:, None].to(ref.dtype)


class SizeFollowingAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` whose bins follow the input size in an exported graph.

    torch.export writes PyTorch's adaptive pooling, for outputs that do not divide the
    input, as gathers at indices computed for the example size: wrong (or failing) at
    every other size. Here the bins are matrices built from the input size (two
    MatMuls), equal to PyTorch's definition. Swapped in for the export only
    (UperNet's pyramid pooling uses scales 1, 2, 3, 6)."""

    def __init__(self, output_size):
        super().__init__()
        out = output_size if isinstance(output_size, (tuple, list)) else (output_size, ) * 2
        self.output_size = tuple(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = _bin_matrix(x.shape[-2], self.output_size[0], x)
        pw = _bin_matrix(x.shape[-1], self.output_size[1], x)
        return ph @ x @ pw.transpose(0, 1)


def _follow_sizes(module: nn.Module) -> None:
    """Swap every ``nn.AdaptiveAvgPool2d`` in ``module`` for the size-following one."""
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d) and None not in (
                child.output_size if isinstance(child.output_size, tuple) else (1, )):
            setattr(module, name, SizeFollowingAdaptiveAvgPool2d(child.output_size))
        else:
            _follow_sizes(child)


# Where each toolbox's data preprocessor keeps its BGR<->RGB switch.
CHANNEL_FLIP_ATTRS = ('_channel_conversion',  # mmengine's ImgDataPreprocessor, mmdet
                      'channel_conversion',  # mmseg's SegDataPreProcessor
                      'to_rgb')  # mmpretrain's ClsDataPreprocessor


def flips_channels(preprocessor: nn.Module) -> bool:
    """Whether ``preprocessor`` reverses the channel order of its 3-channel input."""
    return any(bool(getattr(preprocessor, a, False)) for a in CHANNEL_FLIP_ATTRS)


class _Normalize(nn.Module):
    """The data preprocessor's channel flip, mean and std, in the graph."""

    def __init__(self, preprocessor: nn.Module):
        super().__init__()
        self.flip = flips_channels(preprocessor)
        mean = getattr(preprocessor, 'mean', None)
        std = getattr(preprocessor, 'std', None)
        self.register_buffer('mean', (mean if mean is not None else torch.zeros(3, 1, 1))
                             .float().view(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer('std', (std if std is not None else torch.ones(3, 1, 1))
                             .float().view(1, -1, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = x.flip(1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class _Exported(nn.Module):
    """A model's tensor path from the raw image: its preprocessor's normalisation,
    then ``forward`` of the subclass."""

    def __init__(self, model):
        super().__init__()
        self.normalize, self.model = _Normalize(model.data_preprocessor), model
        # The export is of inference: the wrapper too in eval mode (torch's exporter
        # warns about training mode when only the wrapped model is in eval).
        self.eval()


class _Classifier(_Exported):
    def forward(self, image):
        return self.model(self.normalize(image), mode='tensor')


class _Segmentor(_Exported):
    def forward(self, image):
        logits = self.model.decode_head(self.model.extract_feat(self.normalize(image)))
        return F.interpolate(logits, size=image.shape[2:], mode='bilinear',
                             align_corners=self.model.decode_head.align_corners)


class _DetectorFeatures(_Exported):
    def forward(self, image):
        return tuple(self.model.extract_feat(self.normalize(image)))


def exportable_model(model: nn.Module, scope: str) -> Tuple[nn.Module, str, List[str]]:
    """(module to export, what it covers, output names) for a built model in eval mode."""
    kind = type(model).__name__
    if scope == 'mmpretrain' and hasattr(model, 'head'):
        return _Classifier(model), 'whole classifier', ['logits']
    if scope == 'mmseg' and hasattr(model, 'decode_head'):
        test_cfg = getattr(model, 'test_cfg', None) or {}
        if test_cfg.get('mode', 'whole') != 'whole':
            raise ExportError(f"{kind}: test_cfg.mode={test_cfg.get('mode')!r} (sliding "
                              f"windows) is a loop over crops in Python; export with "
                              f"--cfg-options model.test_cfg.mode=whole")
        _follow_sizes(model)
        return _Segmentor(model), 'backbone + neck + decode head', ['seg_logits']
    if scope == 'mmdet' and hasattr(model, 'extract_feat'):
        n_out = (model.neck.num_outs if getattr(model, 'with_neck', False)
                 else len(model.backbone.out_indices))
        return (_DetectorFeatures(model), 'backbone + neck (the detection heads need '
                "mmdeploy's custom operators: not exported)",
                [f'feat{i}' for i in range(n_out)])
    raise ExportError(f'cannot export a {kind} (scope {scope!r}): classifiers '
                      f'(mmpretrain), segmentors (mmseg) and detectors (mmdet) only')


def export_onnx(module: nn.Module, example: torch.Tensor, out: str,
                output_names: List[str], dynamic: bool = True,
                opset: int = 18) -> None:
    """Record ``module(example)`` with torch.export and write ONNX to ``out``."""
    require_deploy_packages(('onnx', 'onnxscript'))
    check_opset(opset)
    dims = None
    if dynamic:
        if example.shape[0] < 2:
            # torch.export fixes dimensions of size 1 in the example: record with 2.
            example = example.expand(2, -1, -1, -1).contiguous()
        dyn = torch.export.Dim.DYNAMIC
        dims = {'image': {0: dyn, 2: dyn, 3: dyn}}
    try:
        with warnings.catch_warnings():
            # torch.export's own code still uses a pytree API its next release drops;
            # exactly that notice is hidden, nothing else.
            warnings.filterwarnings('ignore', category=FutureWarning,
                                    message=r'`isinstance\(treespec, LeafSpec\)`')
            torch.onnx.export(module, (example, ), out, dynamo=True, opset_version=opset,
                              input_names=['image'], output_names=output_names,
                              dynamic_shapes=dims, external_data=False)
    except Exception as e:  # noqa: BLE001  (torch.export / translation failures)
        model = getattr(module, 'model', module)
        raise ExportError(f'torch.export could not record the model (parts: '
                          f'{_parts(model)}): {str(e).strip().splitlines()[0][:300]}'
                          ) from None


def _parts(model: nn.Module) -> str:
    return ', '.join(f'{n} ({type(m).__name__})' for n, m in model.named_children()
                     if n != 'data_preprocessor')


def run_onnxruntime(path: str, image: np.ndarray) -> List[np.ndarray]:
    """Run the exported model in onnxruntime's CPU provider."""
    require_deploy_packages(('onnxruntime', ))
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: image})


def compare(torch_outs, ort_outs) -> Dict[str, float]:
    """Largest absolute and relative (norm) difference over all outputs."""
    if isinstance(torch_outs, torch.Tensor):
        torch_outs = (torch_outs, )
    abs_diff, rel = 0.0, 0.0
    for t, o in zip(torch_outs, ort_outs):
        t = t.detach().float().numpy()
        o = o.astype(np.float32)
        abs_diff = max(abs_diff, float(np.abs(t - o).max()))
        rel = max(rel, float(np.linalg.norm(t - o) / max(np.linalg.norm(t), 1e-12)))
    return {'max_abs': abs_diff, 'rel': rel}
