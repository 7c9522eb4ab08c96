"""Where a config's loaders read from: their datasets (wrappers opened), evaluators and
every path, and the layout each dataset type expects."""
import os.path as osp
from typing import Iterator, List, Tuple

from mmengine.config import Config

# Layout a dataset type expects under its data root, and the command that makes one.
DATA_LAYOUTS = {
    'CocoDataset': ('COCO: annotations/instances_{train,val}2017.json, train2017/, '
                    'val2017/', 'python tools/generate_data.py coco data/coco'),
    'ADE20KDataset': ('ADE20K: images/{training,validation}/*.jpg and '
                      'annotations/{training,validation}/*.png (labels 0 = ignore, '
                      '1..150) under ADEChallengeData2016/',
                      'python tools/generate_data.py ade20k data/ade'),
    'ImageNet': ('ImageNet: train/<wnid>/*.JPEG, val/*.JPEG, meta/{train,val}.txt',
                 'python tools/generate_data.py imagenet data/imagenet'),
}


# The loaders of a run, in the order the tools check them.
LOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def type_name(item) -> str:
    """The type a config dict builds, without its scope (``'mmdet.CocoMetric'`` ->
    ``'CocoMetric'``); '' for anything else."""
    return str(item.get('type', '')).split('.')[-1] if isinstance(item, dict) else ''


def datasets(cfg: Config, loaders: List[str]) -> Iterator[Tuple[str, dict]]:
    """(config key, dataset dict) of every dataset the loaders read, wrappers opened."""
    def walk(ds, key):
        if isinstance(ds, dict):
            if 'datasets' in ds:  # ConcatDataset
                for i, d in enumerate(ds['datasets']):
                    yield from walk(d, f'{key}.datasets.{i}')
            elif 'dataset' in ds:  # RepeatDataset / ClassBalancedDataset
                yield from walk(ds['dataset'], f'{key}.dataset')
            else:
                yield key, ds
    for name in loaders:
        loader = cfg.get(name)
        if isinstance(loader, dict):
            yield from walk(loader.get('dataset'), f'{name}.dataset')


def evaluators(cfg: Config, loaders: List[str]) -> Iterator[Tuple[str, dict]]:
    """(config key, evaluator dict) of every evaluator of the loaders' loops."""
    for name in loaders:
        key = name.replace('_dataloader', '_evaluator')
        found = cfg.get(key)
        if isinstance(found, dict):
            yield key, found
        elif isinstance(found, (list, tuple)):
            for i, e in enumerate(found):
                yield f'{key}.{i}', e


def _paths(cfg: Config, loaders: List[str]) -> Iterator[Tuple[str, str, str, dict]]:
    """(config key, path, 'dir' or 'file' or 'coco', dataset) of everything read."""
    for key, ds in datasets(cfg, loaders):
        root = ds.get('data_root', '') or ''
        if root:
            yield f'{key}.data_root', root, 'dir', ds
        if ds.get('ann_file'):
            kind = 'coco' if ds.get('type') == 'CocoDataset' else 'file'
            yield f'{key}.ann_file', osp.join(root, ds['ann_file']), kind, ds
        prefix = ds.get('data_prefix') or {}
        for name, value in (prefix.items() if isinstance(prefix, dict) else []):
            if value:
                yield f'{key}.data_prefix.{name}', osp.join(root, value), 'dir', ds
        if ds.get('type') == 'ImageNet' and ds.get('split') and not prefix:
            yield f'{key}.data_root', osp.join(root, ds['split']), 'dir', ds
    for key, ev in evaluators(cfg, loaders):
        if isinstance(ev, dict) and ev.get('ann_file'):
            kind = 'coco' if 'Coco' in str(ev.get('type', '')) else 'file'
            yield f'{key}.ann_file', ev['ann_file'], kind, {}
