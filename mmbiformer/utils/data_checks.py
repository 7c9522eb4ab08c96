"""Checks of a config's data before anything runs: every path the loaders and their
evaluators read, the class lists, and COCO annotation files."""
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

from ..errors import UserError
from ..data.config_walk import DATA_LAYOUTS, _paths, datasets

def check_data(cfg: Config, loaders: List[str]) -> None:
    """Before anything runs, check every path the loaders and their evaluators read
    (data roots, annotation files, image and label folders) and COCO annotation
    files' contents; fail naming every missing path at once with its config key (one
    key per path to set), the expected layout and how to get one."""
    present, missing = set(), []
    for key, path, kind, ds in _paths(cfg, loaders):
        if path in present:
            continue
        if osp.isdir(path) if kind == 'dir' else osp.isfile(path):
            present.add(path)
            if kind == 'coco':
                prefix = (ds or {}).get('data_prefix')
                image_dir = (osp.join(ds.get('data_root', '') or '', prefix['img'])
                             if isinstance(prefix, dict) and prefix.get('img') else None)
                check_coco_annotations(path, key, image_dir)
            continue
        # A dataset's annotation file and folders are read relative to its data_root:
        # with the root missing, setting the root fixes them too. Other keys (an
        # evaluator's annotation file) must be set on their own, so they are listed.
        implied = any(d is ds and k.endswith('.data_root') for k, _, d in missing)
        if not implied:
            missing.append((key, path, ds))
    if not missing:
        check_class_lists(cfg, loaders)
        return
    lines = '\n'.join(f'  {path} (read through {key})' for key, path, _ in missing)
    layout, make = next((DATA_LAYOUTS[ds['type']] for _, _, ds in missing
                         if ds.get('type') in DATA_LAYOUTS), ('', ''))
    hint = (f'Expected layout ({layout}). ' if layout else '') + (
        f'Make a small synthetic one with `{make}`, or link the real dataset there'
        if make else 'Link the dataset there')
    options = ' '.join(f'{key}=PATH' for key, _, _ in missing)
    noun = 'path' if len(missing) == 1 else f'{len(missing)} paths'
    raise UserError(f'dataset {noun} not found:\n{lines}\n{hint}, or point the config '
                    f'elsewhere: --cfg-options {options}')


def check_class_lists(cfg: Config, loaders: List[str]) -> None:
    """ImageNet-style lists (``meta/{split}.txt``: ``path label`` per line): a label
    that is not a whole number, or outside the classes of the model's head
    (``model.head.num_classes``), is an error naming the file, the count and the first
    lines: the loss would meet it deep inside ("Class values must be smaller than
    num_classes"). Lines without a label (an unlabelled test list) are passed over."""
    head = cfg.get('model', {}).get('head')
    classes = head.get('num_classes') if isinstance(head, dict) else None
    for key, ds in datasets(cfg, loaders):
        if ds.get('type') != 'ImageNet':
            continue
        root = ds.get('data_root', '') or ''
        ann = ds.get('ann_file') or (f'meta/{ds["split"]}.txt' if ds.get('split') else '')
        path = osp.join(root, ann) if ann else ''
        if not ann or not osp.isfile(path) or osp.getsize(path) > _CHECK_MAX_BYTES:
            continue
        bad = []
        with open(path) as f:
            for number, line in enumerate(f, 1):
                parts = line.split()
                if len(parts) < 2:  # blank, or an unlabelled (test) entry
                    continue
                label = parts[-1]
                if not label.lstrip('-').isdigit() or (
                        isinstance(classes, int) and not 0 <= int(label) < classes):
                    bad.append(f'{number}: {line.strip()}')
        if bad:
            where = (f'model.head.num_classes={classes}: labels 0..{classes - 1}'
                     if isinstance(classes, int) else 'a whole-number label per line')
            raise UserError(
                f'{path} (read through {key}): {len(bad)} lines whose class label does '
                f'not fit {where} (e.g. line {"; line ".join(bad[:3])}). Fix the list, or '
                f'set model.head.num_classes to the number of classes of the data.')


# Larger annotation files (COCO train2017: 450 MB) are not read through: COCO's are only
# checked to be JSON objects.
_CHECK_MAX_BYTES = 64 << 20


def check_coco_annotations(path: str, key: str = 'ann_file',
                           image_dir: Optional[str] = None) -> None:
    """A COCO annotation file that the toolboxes would reject deep inside (as a
    JSONDecodeError, ``KeyError: 'categories'``, "need at least one array to
    concatenate", ``KeyError: 'bbox'``): say which file and what is wrong with it.
    Its records are checked too (:func:`coco_record_problems`): problems that would
    stop the loader are an error; those it would skip in silence are warned of."""
    import json
    if osp.getsize(path) > _CHECK_MAX_BYTES:
        with open(path, 'rb') as f:
            head = f.read(64).lstrip()
        if not head.startswith(b'{'):
            raise UserError(f'{path} (read through {key}): not a COCO annotation file '
                            f'(JSON object expected)')
        return
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f'{path} (read through {key}): not valid JSON ({e}); a COCO '
                        f'annotation file is expected') from e
    if not isinstance(data, dict):
        raise UserError(f'{path} (read through {key}): a COCO annotation file is a JSON '
                        f'object with images, annotations and categories; got a '
                        f'{type(data).__name__}')
    missing = [k for k in ('images', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise UserError(f'{path} (read through {key}): no {" and no ".join(missing)} '
                        f'list; a COCO annotation file has images, annotations and '
                        f'categories')
    if not data['images']:
        raise UserError(f'{path} (read through {key}): holds zero images')
    if not data['categories']:
        raise UserError(f'{path} (read through {key}): holds zero categories')
    fatal, skipped = coco_record_problems(data, image_dir,
                                          need_boxes=key.startswith('train_dataloader'))
    if skipped:
        from mmengine.logging import print_log
        print_log(f'{path} (read through {key}): the loader skips these records: '
                  + '; '.join(skipped), logger='current', level=30)
    if fatal:
        raise UserError(f'{path} (read through {key}): ' + '; '.join(fatal)
                        + '. Fix or remove these records.')


def _outside(box, image) -> bool:
    """A box [x, y, w, h] that does not overlap its image (its width and height known)."""
    if not isinstance(image, dict):
        return False
    width, height = image.get('width'), image.get('height')
    if not all(isinstance(v, (int, float)) for v in (width, height)):
        return False
    x, y, w, h = box
    return x >= width or y >= height or x + w <= 0 or y + h <= 0


def coco_record_problems(data: dict, image_dir: Optional[str] = None,
                         need_boxes: bool = False):
    """(fatal, skipped): what is wrong with a COCO file's annotation and image
    records, one line per kind of problem with its count and the first record ids.
    Fatal: what stops mmdet's loader (a missing or malformed ``bbox``, a record that
    is not an object, an image file missing from ``image_dir``); skipped: what it
    passes over without a word (boxes of no area, unknown categories, annotations of
    no image, boxes outside their image). ``need_boxes`` (a training set): no usable box
    at all is fatal."""
    from collections import defaultdict
    images = {im.get('id'): im for im in data['images'] if isinstance(im, dict)}
    categories = {c.get('id') for c in data['categories'] if isinstance(c, dict)}
    found = defaultdict(list)  # (fatal, what) -> record ids
    usable = 0
    for ann in data.get('annotations') or []:
        if not isinstance(ann, dict):
            found[True, 'annotation records that are not JSON objects'].append('?')
            continue
        rid = ann.get('id', '?')
        box = ann.get('bbox')
        if 'bbox' not in ann:
            found[True, "annotations without a 'bbox'"].append(rid)
        elif not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            found[True, "annotations whose 'bbox' is not 4 numbers [x, y, w, h]"].append(rid)
        elif box[2] <= 0 or box[3] <= 0:
            found[False, 'annotations whose box has no positive width and height'].append(rid)
        elif _outside(box, images.get(ann.get('image_id'))):
            found[False, 'annotations whose box lies outside its image'].append(rid)
        else:
            usable += ann.get('category_id') in categories and ann.get('image_id') in images
        if ann.get('category_id') not in categories:
            found[False, 'annotations whose category_id is not among the '
                  'categories'].append(rid)
        if ann.get('image_id') not in images:
            found[False, 'annotations whose image_id names no image'].append(rid)
    if image_dir and osp.isdir(image_dir):
        for rid, im in images.items():
            if not osp.isfile(osp.join(image_dir, str(im.get('file_name', '')))):
                found[True, f'images whose file is missing from {image_dir}'].append(rid)
    lines = {True: [], False: []}
    for (fatal, what), ids in found.items():
        shown = ', '.join(str(i) for i in ids[:5]) + (', ...' if len(ids) > 5 else '')
        lines[fatal].append(f'{len(ids)} {what} (ids {shown})')
    if need_boxes and not usable:
        lines[True].append('no usable box: each of its boxes is skipped or outside its image '
                           '(or it has none), so training would see background only')
    return lines[True], lines[False]
