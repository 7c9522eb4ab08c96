"""Unreadable images and label maps: one clear error, an opt-in skip, a full check.

The toolboxes' loaders fail on a damaged file deep inside a traceback that often does
not name it: ``AssertionError: failed to load image`` (a truncated JPEG, text named
``.jpg``), ``cv2.error ... !buf.empty()`` (a zero-byte image), ``PIL.UnidentifiedImageError``
(a zero-byte label map). :func:`guard_loading` wraps every loading transform of the
config's pipelines in :class:`CheckedLoad`, which turns any such failure into an
:class:`UnreadableDataError` naming the file, the dataset and the config key, in the
main process and in loader workers alike. With ``skip_unreadable_images = True`` in
the config, training skips such samples instead (the dataset draws another one), with
a warning and a running count. :func:`find_unreadable` decodes every image and label
map of the loaders' datasets up front (``tools/check_data.py --check-images``,
``tools/train.py --check-images``).
"""
import contextlib
import io
import logging
from typing import Iterator, List, Optional, Tuple

from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

from ..errors import UserError, error_summary
from .config_walk import LOADER_KEYS, datasets, type_name

# Loading transforms that read a file per sample (the toolboxes' names, any scope).
LOADERS = ('LoadImageFromFile', 'LoadAnnotations')
SKIP_KEY = 'skip_unreadable_images'


class UnreadableDataError(UserError):
    """An image or label map that cannot be read (a ``UserError`` for the tools).

    Raised in a loader worker, PyTorch re-raises it in the main process with the
    worker's traceback as its message; only the original message is kept."""

    def __init__(self, message: str = ''):
        marker = f'{type(self).__name__}: '
        if message.startswith('Caught ') and marker in message:
            message = message.rsplit(marker, 1)[1].strip() + ' (in a data loader worker)'
        super().__init__(message)


def _describe(results: dict, loader: str) -> Tuple[str, str]:
    """(what, path) of the file ``loader`` reads for this sample."""
    if loader == 'LoadAnnotations' and results.get('seg_map_path'):
        return 'label map', results['seg_map_path']
    if loader == 'LoadAnnotations':
        return 'annotations of image', results.get('img_path', '?')
    return 'image', results.get('img_path', '?')


@TRANSFORMS.register_module()
class CheckedLoad(BaseTransform):
    """Run the loading transform ``transform``; a failure becomes an
    :class:`UnreadableDataError` naming the file, ``dataset`` and ``config_key``, or,
    with ``skip``, a warning and ``None`` (the dataset then draws another sample)."""

    _skipped = 0  # per process

    def __init__(self, transform: dict, config_key: str, dataset: str,
                 skip: bool = False):
        self.loader = str(transform['type']).split('.')[-1]
        self.inner = TRANSFORMS.build(transform)
        self.config_key = config_key
        self.dataset = dataset
        self.skip = skip

    def transform(self, results: dict) -> Optional[dict]:
        what, path = _describe(results, self.loader)
        try:
            out = self.inner(results)
        except Exception as e:  # noqa: BLE001 (any decoder's error is "unreadable")
            reason = error_summary(e)
        else:
            if out is not None:
                return out
            reason = 'the loader returned nothing'
        where = f'{self.dataset} (from {self.config_key})'
        if self.skip:
            CheckedLoad._skipped += 1
            print_log(f'skipped an unreadable {what} {path} of {where}: {reason} '
                      f'({CheckedLoad._skipped} skipped so far in this process)',
                      logger='current', level=logging.WARNING)
            return None
        raise UnreadableDataError(
            f'cannot read {what} {path} of {where}: {reason}. Replace or remove the file; '
            f'`python tools/check_data.py CONFIG --check-images` lists every unreadable '
            f'file, and `--cfg-options {SKIP_KEY}=True` makes training skip them with a '
            f'warning')

    def __repr__(self) -> str:
        return f'CheckedLoad({self.inner!r})'


def _dataset_name(ds: dict) -> str:
    root = ds.get('data_root')
    return f"{ds.get('type', 'dataset')}" + (f' at {root}' if root else '')


def guard_loading(cfg) -> None:
    """Wrap each loading transform of the loaders' pipelines in :class:`CheckedLoad`
    (in place; pipelines are replaced, not edited, so shared lists stay intact)."""
    skip = bool(cfg.get(SKIP_KEY, False))
    for key, ds in datasets(cfg, LOADER_KEYS):
        pipeline = ds.get('pipeline')
        if not isinstance(pipeline, (list, tuple)):
            continue
        # Evaluation datasets cannot skip a sample (mmengine refuses None there).
        train = key.startswith('train_dataloader')
        ds['pipeline'] = [
            dict(type='CheckedLoad', transform=t, config_key=f'{key}.pipeline.{i}',
                 dataset=_dataset_name(ds), skip=skip and train)
            if type_name(t) in LOADERS else t for i, t in enumerate(pipeline)]


def unguard_loading(cfg) -> None:
    """Undo :func:`guard_loading` (in place): the loading transforms of a config that a
    tool dumped (``work_dir/<config>.py``) back as the toolbox knows them. The
    inferencers (``tools/demo.py``) replace ``LoadImageFromFile`` in the test pipeline
    by type, and do not look inside :class:`CheckedLoad`; training and testing wrap the
    transforms again."""
    for _, ds in datasets(cfg, LOADER_KEYS):
        pipeline = ds.get('pipeline')
        if isinstance(pipeline, (list, tuple)):
            ds['pipeline'] = [t['transform'] if type_name(t) == 'CheckedLoad' else t
                              for t in pipeline]


def _decode(path: str, label: bool):
    """(the decoded array or None, why ``path`` cannot be decoded or None)."""
    import mmcv
    from mmengine import fileio
    try:
        data = fileio.get(path)
        img = mmcv.imfrombytes(data, flag='unchanged', backend='pillow' if label else 'cv2')
    except Exception as e:  # noqa: BLE001
        return None, error_summary(e)
    return (img, None) if img is not None else (None, 'not a decodable image')


def _label_problem(image, label, dataset) -> Optional[str]:
    """What is wrong with a decodable label map beside its image: another size, or
    values outside the dataset's classes (after ``reduce_zero_label``; 255 is the
    ignore label)."""
    import numpy as np
    if image is not None and image.shape[:2] != label.shape[:2]:
        return (f'label map {label.shape[1]}x{label.shape[0]}, its image '
                f'{image.shape[1]}x{image.shape[0]}')
    classes = len(dataset.metainfo.get('classes') or ())
    if not classes:
        return None
    values = np.unique(label)
    reduce = bool(getattr(dataset, 'reduce_zero_label', False))
    top = classes if reduce else classes - 1  # raw values that map to a class
    outside = [int(v) for v in values if v != 255 and not (0 <= v <= top)]
    if outside:
        return (f'label values {outside[:5]} outside the {classes} classes (raw values '
                f'0..{top}{" with reduce_zero_label" if reduce else ""}, 255 ignored)')
    return None


def check_images(cfg, loaders: List[str]) -> int:
    """:func:`find_unreadable`, raising an :class:`UnreadableDataError` that lists
    every failure; returns the number of files decoded."""
    n, bad = find_unreadable(cfg, loaders, progress=True)
    if not bad:
        return n
    shown = '\n'.join(f'  {path} ({reason}; read through {key})'
                      for key, path, reason in bad[:20])
    more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
    unreadable = sum(not reason.startswith(_LABEL_PROBLEMS) for _, _, reason in bad)
    skip = (f', or train with `--cfg-options {SKIP_KEY}=True` to skip the unreadable '
            f'ones with a warning' if unreadable else '')
    raise UnreadableDataError(
        f'{len(bad)} of {n} images and label maps cannot be read or do not fit their '
        f'dataset:\n{shown}{more}\nReplace or remove them{skip}')


_LABEL_PROBLEMS = ('label map ', 'label values ')


def find_unreadable(cfg, loaders: List[str], progress: bool = False
                    ) -> Tuple[int, List[Tuple[str, str, str]]]:
    """Decode every image and label map the loaders' datasets list: (files checked,
    [(config key, path, reason)] of those that fail to decode, and of label maps of
    another size than their image or with values outside the dataset's classes)."""
    import copy

    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    seen, bad = set(), []
    for key, ds in datasets(cfg, loaders):
        ds_cfg = copy.deepcopy(ds)
        ds_cfg['pipeline'] = []  # only the file list is wanted
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' 4 lines a file
            dataset = DATASETS.build(ds_cfg)
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            decoded = {}
            for path, label in ((info.get('img_path'), False),
                                (info.get('seg_map_path'), True)):
                if not path or path in seen:
                    continue
                seen.add(path)
                if progress and len(seen) % 1000 == 0:
                    print_log(f'{len(seen)} files decoded', logger='current')
                decoded[label], reason = _decode(path, label)
                if reason:
                    bad.append((key, path, reason))
            if decoded.get(True) is not None:
                problem = _label_problem(decoded.get(False), decoded[True], dataset)
                if problem:
                    bad.append((key, info['seg_map_path'], problem))
    return len(seen), bad
