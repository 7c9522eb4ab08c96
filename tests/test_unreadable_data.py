"""Unreadable images and label maps (CPU, generated ADE20K data): named with their
dataset and config key (in the main process and from a loader worker), skipped with a
warning when asked, and all listed by ``tools/check_data.py --check-images``."""
import glob
import re
import os.path as osp
import sys

import pytest
import torch

from mmbiformer.data import UnreadableDataError, guard_loading
from mmbiformer.data import unreadable as unreadable_module
from mmbiformer.testing import MAKERS
from mmbiformer.utils.launch import load_config
from mmbiformer.utils.short_run import short_run_options
from helpers import ROOT

CONFIG = osp.join(ROOT, 'configs/seg/upernet_biformer_t.py')


@pytest.fixture(scope='module')
def damaged(tmp_path_factory):
    """Generated ADE20K with a truncated JPEG and a zero-byte label map among the
    training samples and text named .jpg among the validation images."""
    root = MAKERS['ade20k'](str(tmp_path_factory.mktemp('ade')), num_train=3, num_val=1,
                            size=(32, 48))
    root = osp.join(root, 'ADEChallengeData2016')
    imgs = sorted(glob.glob(f'{root}/images/training/*.jpg'))
    labels = sorted(glob.glob(f'{root}/annotations/training/*.png'))
    val = sorted(glob.glob(f'{root}/images/validation/*.jpg'))
    data = open(imgs[0], 'rb').read()
    open(imgs[0], 'wb').write(data[:len(data) // 3])
    open(labels[1], 'wb').write(b'')
    open(val[0], 'w').write('not an image\n')
    return root, {'truncated': imgs[0], 'empty label': labels[1], 'text': val[0]}


def config(root, **extra):
    # data roots (it adds ADEChallengeData2016/), small crops
    options = short_run_options('seg', osp.dirname(root), (32, 48))
    cfg = load_config(CONFIG, {**options, **extra})
    guard_loading(cfg)
    return cfg


def dataset(cfg, key):
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    return DATASETS.build(cfg[key].dataset)


def test_named_with_dataset_and_key_also_from_a_worker(damaged):
    root, bad = damaged
    train = dataset(config(root), 'train_dataloader')
    with pytest.raises(UnreadableDataError) as e:
        train[0]
    assert bad['truncated'] in str(e.value)
    assert 'ADE20KDataset' in str(e.value)
    assert 'train_dataloader.dataset.pipeline.0' in str(e.value)
    assert '--check-images' in str(e.value)
    with pytest.raises(UnreadableDataError, match='cannot read label map .*UnidentifiedImage'):
        train[1]
    loader = torch.utils.data.DataLoader(train, num_workers=1, collate_fn=lambda b: b)
    batches, message = iter(loader), ''
    try:
        next(batches)
    except UnreadableDataError as e:
        message = str(e)
    del batches  # the worker stops now, not at a later collection
    assert message.startswith(f'cannot read image {bad["truncated"]}')
    assert message.endswith('(in a data loader worker)')
    assert 'Traceback' not in message


def test_skipped_with_a_warning_in_training_only(damaged, monkeypatch):
    root, bad = damaged
    warnings = []
    monkeypatch.setattr(unreadable_module, 'print_log', lambda msg, **kw: warnings.append(msg))
    cfg = config(root, skip_unreadable_images=True)
    train = dataset(cfg, 'train_dataloader')
    sample = train[0]  # another sample drawn in its place: the readable one
    assert sample['data_samples'].img_path not in bad.values()
    assert bad['truncated'] in warnings[0] and 'skipped so far' in warnings[0]
    with pytest.raises(UnreadableDataError, match='val_dataloader'):  # never skipped
        dataset(cfg, 'val_dataloader')[0]


def test_check_data_lists_every_unreadable_file(damaged):
    root, bad = damaged
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import check_data
    finally:
        sys.path.pop(0)
    argv = [CONFIG, '--check-images', '--cfg-options'] + [
        f'{k}.dataset.data_root={root}'
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    with pytest.raises(UnreadableDataError) as e:
        check_data.main(argv)
    message = str(e.value)
    assert message.startswith('3 of 8 images and label maps cannot be read or do not fit')
    assert 'skip the unreadable ones' in message
    for path in bad.values():
        assert path in message
    assert 'read through val_dataloader.dataset' in message


def test_demo_names_a_corrupt_image_before_any_work(damaged, tmp_path):
    from mmbiformer.errors import UserError
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import demo
    finally:
        sys.path.pop(0)
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    cases = {str(empty): 'is empty (0 bytes)',
             damaged[1]['truncated']: 'cannot decode it as an image',
             damaged[1]['text']: 'cannot decode it as an image'}
    for image, message in cases.items():
        # The checkpoint is never looked at: the image is checked first.
        with pytest.raises(UserError, match=re.escape(message)):
            demo.main([CONFIG, 'no-such-checkpoint.pth', image])


def test_label_maps_that_do_not_fit_their_images_or_classes(tmp_path):
    """--check-images: a label map of another size than its image, and one with a value
    past ADE20K's 150 classes, each named with what is wrong (the loader would crop
    them wrongly or the loss would fail mid-training)."""
    import glob

    import cv2
    from mmbiformer.data import check_images
    root = MAKERS['ade20k'](str(tmp_path / 'ade'), num_train=2, num_val=1, size=(32, 40))
    maps = sorted(glob.glob(osp.join(root, 'ADEChallengeData2016', 'annotations',
                                     'training', '*.png')))
    cv2.imwrite(maps[0], cv2.resize(cv2.imread(maps[0], 0), (20, 16),
                                    interpolation=cv2.INTER_NEAREST))
    label = cv2.imread(maps[1], 0)
    label[0, 0] = 200
    cv2.imwrite(maps[1], label)
    with pytest.raises(UnreadableDataError) as e:
        check_images(config(osp.join(root, 'ADEChallengeData2016')), ['train_dataloader'])
    message = str(e.value)
    assert re.search(re.escape(f'{maps[0]} (label map 20x16, its image ') + r'\d+x\d+',
                     message), message
    assert f'{maps[1]} (label values [200] outside the 150 classes' in message
    assert 'skip the unreadable' not in message  # skipping is for unreadable files


def test_a_dumped_config_loads_as_its_source(tmp_path):
    """A run's dumped config (loaders wrapped in CheckedLoad, test.py --out's
    SafeDumpResults added) reads back as the source config: the inferencers of
    tools/demo.py look for the loading transforms by type."""
    source = load_config(osp.join(ROOT, 'configs/cls/biformer_t_in1k.py'))
    run = load_config(osp.join(ROOT, 'configs/cls/biformer_t_in1k.py'))
    guard_loading(run)
    run.test_evaluator = [run.test_evaluator, dict(type='SafeDumpResults', out_file_path='x.pkl')]
    assert run.test_dataloader.dataset.pipeline[0]['type'] == 'CheckedLoad'
    dumped = str(tmp_path / 'dumped.py')
    run.dump(dumped)
    again = load_config(dumped)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert again[key].dataset.pipeline == source[key].dataset.pipeline, key
    assert again.test_evaluator == source.test_evaluator
