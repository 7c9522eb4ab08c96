"""A minimal stand-in for torchvision, installed only where torchvision cannot load.

mmpretrain 1.2.0 imports torchvision in its models, datasets and evaluation packages,
yet BiFormer classification needs none of it. Where no torchvision build matches the
installed torch (e.g. torch 2.13 CPU, for which none is published), this module
provides what mmpretrain touches at import time: the box ops (real implementations),
``InterpolationMode`` and a ``RandomResizedCrop`` base class. Any other torchvision
function raises an ImportError that says so. A working torchvision is never replaced.
"""
import enum
import importlib
import importlib.machinery
import sys
import types

import torch

MISSING = ('torchvision is not installed (or does not match torch {}); mmbiformer '
           'provides only the parts mmpretrain needs at import. Install a torchvision '
           'built for your torch to use {!r}.')


def _missing(module_name):
    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ImportError(MISSING.format(torch.__version__, f'{module_name}.{name}'))
    return __getattr__


def _box_area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _upcast(t):
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def _box_inter_union(boxes1, boxes2):
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = _box_area(boxes1)[:, None] + _box_area(boxes2) - inter
    return inter, union


def _box_iou(boxes1, boxes2):
    inter, union = _box_inter_union(boxes1, boxes2)
    return inter / union


def _generalized_box_iou(boxes1, boxes2):
    inter, union = _box_inter_union(boxes1, boxes2)
    iou = inter / union
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


class InterpolationMode(enum.Enum):
    NEAREST = 'nearest'
    NEAREST_EXACT = 'nearest-exact'
    BILINEAR = 'bilinear'
    BICUBIC = 'bicubic'
    BOX = 'box'
    HAMMING = 'hamming'
    LANCZOS = 'lanczos'


class RandomResizedCrop(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        raise ImportError(MISSING.format(torch.__version__,
                                         'torchvision.transforms.RandomResizedCrop'))


def _module(name, **attrs):
    mod = types.ModuleType(name)
    # A spec, as imported modules have: importlib.util.find_spec (e.g. torch.onnx's
    # exporter looking for torchvision) raises on a module whose __spec__ is None.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.__dict__.update(attrs)
    mod.__getattr__ = _missing(name)
    mod.__mmbiformer_stub__ = True
    return mod


def torchvision_usable() -> bool:
    try:
        importlib.import_module('torchvision')
        return True
    except Exception:  # noqa: BLE001 - absent, or built for another torch
        for name in [n for n in sys.modules if n.split('.')[0] == 'torchvision']:
            del sys.modules[name]
        return False


def install() -> bool:
    """Put the stand-in into ``sys.modules`` if torchvision cannot be imported."""
    if torchvision_usable():
        return False
    boxes = _module('torchvision.ops.boxes', box_area=_box_area, box_iou=_box_iou,
                    generalized_box_iou=_generalized_box_iou, _upcast=_upcast)
    ops = _module('torchvision.ops', boxes=boxes, box_area=_box_area, box_iou=_box_iou,
                  generalized_box_iou=_generalized_box_iou)
    functional = _module('torchvision.transforms.functional',
                         InterpolationMode=InterpolationMode)
    tv_transforms = _module('torchvision.transforms.transforms',
                            InterpolationMode=InterpolationMode,
                            RandomResizedCrop=RandomResizedCrop)
    transforms = _module('torchvision.transforms', functional=functional,
                         transforms=tv_transforms, InterpolationMode=InterpolationMode,
                         RandomResizedCrop=RandomResizedCrop)
    root = _module('torchvision', ops=ops, transforms=transforms,
                   __version__='0.0.0+mmbiformer.stub')
    for mod in (root, ops, boxes, transforms, functional, tv_transforms):
        sys.modules[mod.__name__] = mod
    return True
