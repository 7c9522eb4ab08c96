"""Small, learnable datasets written in the exact layouts of COCO, ADE20K and ImageNet.

Each image is a smooth random texture with a few coloured shapes; a class is a fixed
(shape, colour) pair, so models can really learn it. Everything is deterministic given
the seed. Class names are taken from the real datasets, so the standard configs
(80-class COCO, 150-class ADE20K, 1000-class ImageNet) read the data unchanged.
"""
import json
import os
import os.path as osp
from typing import List, Tuple

import cv2
import numpy as np

# The real COCO category ids, in the order of mmdet's CocoDataset classes. All 80 are
# written (so predictions of any class map to an id); the shapes use the first ones.
COCO_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) +
            list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))


def coco_categories() -> List[Tuple[int, str]]:
    from mmdet.datasets import CocoDataset
    return list(zip(COCO_IDS, CocoDataset.METAINFO['classes']))
# ADE20K label 1 ('wall') is the background; shapes use labels 2.. (0 = ignore).
ADE_BACKGROUND_LABEL = 1
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'hexagon', 'star', 'cross', 'bar')
PALETTE = [(220, 40, 40), (40, 180, 40), (40, 60, 220), (230, 200, 30),
           (200, 40, 200), (30, 200, 210), (240, 130, 20), (120, 60, 20)]
MAX_CLASSES = len(SHAPES)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth, low-contrast random background (uint8 HxWx3)."""
    base = rng.uniform(60, 190, size=3)
    coarse = rng.normal(0, 25, size=(max(2, h // 16), max(2, w // 16), 3))
    noise = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 6, size=(h, w, 3))
    return np.clip(base + noise + fine, 0, 255).astype(np.uint8)


def _shape_polygon(shape: str, cx: float, cy: float, r: float,
                   angle: float) -> np.ndarray:
    if shape == 'circle':
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'star':
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
    elif shape == 'cross':
        a, b = 1.0, 0.35
        pts = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a),
                        (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)])
    elif shape == 'bar':
        pts = np.array([(-1, -0.35), (1, -0.35), (1, 0.35), (-1, 0.35)])
    else:
        n = {'square': 4, 'triangle': 3, 'diamond': 4, 'hexagon': 6}[shape]
        offset = np.pi / 4 if shape == 'square' else -np.pi / 2
        t = offset + np.linspace(0, 2 * np.pi, n, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        if shape == 'diamond':
            pts[:, 0] *= 0.6
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts * r + np.array([cx, cy])


def _draw_shape(rng: np.random.Generator, image: np.ndarray, cls: int,
                r: float) -> np.ndarray:
    """Draw a shape of class ``cls`` (radius ``r``) at a random place; its polygon."""
    h, w = image.shape[:2]
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    poly = _shape_polygon(SHAPES[cls], cx, cy, r, rng.uniform(0, np.pi))
    colour = np.clip(np.array(PALETTE[cls]) + rng.normal(0, 12, 3), 0, 255)
    cv2.fillPoly(image, [np.round(poly).astype(np.int32)], colour.tolist())
    return poly


def _write_jpg(path: str, rgb: np.ndarray) -> None:
    cv2.imwrite(path, rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])


# Small-object scenes: COCO calls an object small below 32 x 32 = 1024 pixels of area;
# radii of 5-16 pixels keep every shape under it (a circle of radius 16: 804 pixels).
SMALL_RADIUS = (5.0, 16.0)
SMALL_FRACTION = 0.75
SMALL_MAX_OBJECTS = 12


def render_scene(rng: np.random.Generator, h: int, w: int, num_classes: int,
                 max_objects: int = 4,
                 small_objects: bool = False) -> Tuple[np.ndarray, List[dict]]:
    """An image and its instances: dicts with ``cls``, ``polygon``, ``mask``.

    Later instances are drawn over earlier ones; masks are the visible parts. With
    ``small_objects`` a scene has up to 12 objects, three in four of them small in
    COCO's sense (radius 5-16 pixels, whatever the image size).
    """
    image = _texture(rng, h, w)
    instances = []
    label = np.full((h, w), -1, np.int32)  # instance index per pixel
    if small_objects:
        max_objects = SMALL_MAX_OBJECTS
    for idx in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(num_classes))
        if small_objects and rng.uniform() < SMALL_FRACTION:
            radius = rng.uniform(*SMALL_RADIUS)
        else:
            radius = rng.uniform(0.08, 0.25) * min(h, w)
        poly = _draw_shape(rng, image, cls, radius)
        cv2.fillPoly(label, [np.round(poly).astype(np.int32)], idx)
        instances.append(dict(cls=cls, polygon=poly))
    for idx, inst in enumerate(instances):
        inst['mask'] = label == idx
    return image, [i for i in instances if i['mask'].sum() >= 16]


def _image_size(rng, size: Tuple[int, int]) -> Tuple[int, int]:
    """Vary the aspect ratio around ``size`` so no size constraint goes unnoticed."""
    h, w = size
    scale = rng.uniform(0.8, 1.25)
    return int(h * rng.uniform(0.85, 1.15)), int(w * scale)


def _check_classes(num_classes: int) -> None:
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be in [1, {MAX_CLASSES}], got {num_classes}')


def make_coco(out: str, num_train: int = 32, num_val: int = 8, size=(256, 320),
              num_classes: int = 4, seed: int = 0, small_objects: bool = False) -> str:
    """COCO instances: ``annotations/instances_{train,val}2017.json``,
    ``train2017/``, ``val2017/``. ``small_objects``: mostly small objects (see
    :func:`render_scene`), so that COCO's AP_s can be read."""
    _check_classes(num_classes)
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    categories = coco_categories()
    cats = [dict(id=cid, name=name, supercategory='object') for cid, name in categories]
    ann_id = 1
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(out, split), exist_ok=True)
        images, anns = [], []
        for i in range(count):
            img_id = len(images) + 1 + (0 if split == 'train2017' else 1_000_000)
            h, w = _image_size(rng, size)
            image, instances = render_scene(rng, h, w, num_classes,
                                            small_objects=small_objects)
            name = f'{img_id:012d}.jpg'
            _write_jpg(osp.join(out, split, name), image)
            images.append(dict(id=img_id, file_name=name, height=h, width=w))
            for inst in instances:
                ys, xs = np.nonzero(inst['mask'])
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                contours, _ = cv2.findContours(inst['mask'].astype(np.uint8),
                                               cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                segm = [c.reshape(-1).astype(float).tolist() for c in contours
                        if len(c) >= 3]
                anns.append(dict(id=ann_id, image_id=img_id,
                                 category_id=categories[inst['cls']][0],
                                 bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                 area=float(inst['mask'].sum()), segmentation=segm,
                                 iscrowd=0))
                ann_id += 1
        with open(osp.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=anns, categories=cats,
                           info=dict(description='mmbiformer synthetic COCO'),
                           licenses=[]), f)
    return out


def make_ade20k(out: str, num_train: int = 32, num_val: int = 8, size=(256, 320),
                num_classes: int = 4, seed: int = 0) -> str:
    """ADE20K: ``ADEChallengeData2016/{images,annotations}/{training,validation}``.

    ``out`` is the data root (``data/ade``); labels follow ADE (0 ignore, 1..150).
    """
    _check_classes(num_classes)
    rng = np.random.default_rng(seed)
    root = osp.join(out, 'ADEChallengeData2016')
    for split, prefix, count in (('training', 'ADE_train', num_train),
                                 ('validation', 'ADE_val', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(count):
            h, w = _image_size(rng, size)
            image, instances = render_scene(rng, h, w, num_classes)
            seg = np.full((h, w), ADE_BACKGROUND_LABEL, np.uint8)
            for inst in instances:
                seg[inst['mask']] = ADE_BACKGROUND_LABEL + 1 + inst['cls']
            # Thin unlabeled outlines, like ADE's boundary pixels (label 0 = ignore).
            for inst in instances:
                cv2.polylines(seg, [np.round(inst['polygon']).astype(np.int32)], True, 0, 1)
            name = f'{prefix}_{i + 1:08d}'
            _write_jpg(osp.join(root, 'images', split, name + '.jpg'), image)
            cv2.imwrite(osp.join(root, 'annotations', split, name + '.png'), seg)
    return out


def make_imagenet(out: str, num_train: int = 8, num_val: int = 2, size=(96, 96),
                  num_classes: int = 4, seed: int = 0) -> str:
    """ImageNet: ``train/<wnid>/*.JPEG``, ``val/*.JPEG`` and ``meta/{train,val}.txt``.

    ``num_train`` / ``num_val`` are images per class. Each image shows one large
    shape of its class (the classification target).
    """
    _check_classes(num_classes)
    rng = np.random.default_rng(seed)
    wnids = [f'n{10000000 + i:08d}' for i in range(num_classes)]
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    lines = {'train': [], 'val': []}
    for split, per_class in (('train', num_train), ('val', num_val)):
        for cls, wnid in enumerate(wnids):
            folder = osp.join(out, split, wnid) if split == 'train' else osp.join(out, split)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                h, w = size
                image = _texture(rng, h, w)
                _draw_shape(rng, image, cls, rng.uniform(0.25, 0.4) * min(h, w))
                if split == 'train':
                    name = f'{wnid}_{i + 1}.JPEG'
                    rel = f'{wnid}/{name}'
                else:
                    name = f'ILSVRC2012_val_{cls * per_class + i + 1:08d}.JPEG'
                    rel = name
                _write_jpg(osp.join(folder, name), image)
                lines[split].append(f'{rel} {cls}')
    for split, entries in lines.items():
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(entries) + '\n')
    return out


MAKERS = {'coco': make_coco, 'ade20k': make_ade20k, 'imagenet': make_imagenet}
