"""Input-pipeline benchmark: how many images per second a config's training pipeline
delivers, and where it stops scaling (``tools/benchmark.py loader``).

Three figures, each in this process:

* **one worker**: the dataset's ``__getitem__`` (decode and every transform) with one
  torch thread, as a DataLoader worker runs it: images per second per core;
* **the DataLoader** the config builds (its sampler, collate and pinning) with N
  workers: images per second over ``--batches`` batches after the first;
* **efficiency**: the DataLoader's rate over N times one worker's. Below 1, something
  beside the workers' arithmetic limits it: the main process (receiving batches through
  shared memory, pinning), the collate, or the cores being fewer than the workers.

Data: generated JPEGs in the config's dataset layout at the real data's typical size
(ImageNet: 375x500, as most of its training images), a few distinct images listed
many times (the disk is not what is measured: files come from the page cache), or
``--data-root``.
"""
import copy
import os
import os.path as osp
import time
from typing import List

import torch

from ..errors import UserError
from .pipeline import data_kind, load_any_config, loader_dataset, make_data, point_at_data

# Typical size (H, W) of the real data's training images.
REAL_SIZES = {'imagenet': (375, 500), 'coco': (480, 640), 'ade20k': (512, 683)}
DISTINCT = 64  # distinct generated images; the list repeats them


def _repeat_list(root: str, kind: str, total: int) -> None:
    """List the generated images ``total`` times in all (ImageNet's meta/train.txt)."""
    if kind != 'imagenet':
        return
    path = osp.join(root, 'meta', 'train.txt')
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    with open(path, 'w') as f:
        f.write('\n'.join((lines * (total // len(lines) + 1))[:total]) + '\n')


def loader_data(args, cfg, total: int):
    """(kind, size, root) of the images to read: ``--data-root`` or generated."""
    kind, _ = data_kind(cfg)
    size = tuple(args.size) if args.size else REAL_SIZES.get(kind, (375, 500))
    if args.data_root:
        return kind, size, args.data_root
    root = osp.join(args.work_dir, f'loader_{kind}_{size[0]}x{size[1]}')
    make_data(kind, root, DISTINCT, size)
    _repeat_list(root, kind, total)
    return kind, size, root


def per_worker_rate(dataset, samples: int) -> float:
    """Images per second of ``dataset[i]`` with one torch thread (a worker's setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset[0]  # lazy initialisation, first file opened
        start = time.perf_counter()
        for i in range(samples):
            dataset[(i + 1) % len(dataset)]
        return samples / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def loader_rate(loader_cfg: dict, workers: int, batches: int) -> float:
    """Images per second the config's DataLoader with ``workers`` workers delivers."""
    from mmengine.runner import Runner
    cfg = copy.deepcopy(loader_cfg)
    cfg.update(num_workers=workers, persistent_workers=False)
    if not torch.cuda.is_available():
        cfg['pin_memory'] = False
    loader = Runner.build_dataloader(cfg, seed=0)
    it = iter(loader)
    next(it)  # workers started, first batch made
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        inputs = batch['inputs']
        images += len(inputs) if isinstance(inputs, (list, tuple)) else inputs.shape[0]
    seconds = time.perf_counter() - start
    del it, loader
    return images / seconds


def run(args) -> dict:
    import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registries)
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = load_any_config(args.config, args.cfg_options)
    if args.batch:
        cfg.train_dataloader.batch_size = args.batch
    batch = int(cfg.train_dataloader.batch_size)
    total = batch * (args.batches + 2) * max(1, max(args.workers))
    kind, size, root = loader_data(args, cfg, total)
    point_at_data(cfg, kind, root)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    dataset = DATASETS.build(copy.deepcopy(loader_dataset(cfg)))
    if len(dataset) == 0:
        raise UserError(f'loader benchmark: the dataset under {root} is empty')
    one = per_worker_rate(dataset, args.samples)
    rows = [dict(workers=n, img_s=loader_rate(cfg.train_dataloader, n, args.batches))
            for n in args.workers]
    return dict(config=args.config, size=list(size), batch=batch, cores=os.cpu_count(),
                per_worker=one, rows=rows, data_root=root)


def table(result: dict) -> str:
    lines = [f'{result["config"]}: training pipeline on {result["size"][0]}x'
             f'{result["size"][1]} JPEGs, batch {result["batch"]}, {result["cores"]} cores',
             f'one worker (dataset[i], 1 torch thread): {result["per_worker"]:.1f} img/s',
             f'{"workers":>8} {"img/s":>9} {"of N x one worker":>18}']
    for row in result['rows']:
        n = row['workers']
        ideal = result['per_worker'] * max(n, 1)
        lines.append(f'{n:>8} {row["img_s"]:9.1f} {row["img_s"] / ideal:18.2f}')
    lines.append('workers 0: the main process loads each batch itself')
    return '\n'.join(lines)


def arguments(parser) -> None:
    from ..utils.cfg_options import ConfigOptions
    parser.add_argument('config', help="config file; its train loader's pipeline is timed")
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 8],
                        help='DataLoader worker counts to time')
    parser.add_argument('--batches', type=int, default=20,
                        help='batches timed per worker count (after the first)')
    parser.add_argument('--samples', type=int, default=64,
                        help='images timed for the one-worker rate')
    parser.add_argument('--batch', type=int, help="images per batch (default: the config's)")
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='size of the generated images (default: the real data\'s '
                        'typical size, 375x500 for ImageNet)')
    parser.add_argument('--data-root', help='read this data (the config\'s dataset layout) '
                        'instead of generating it')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_loader')
    parser.add_argument('--out', help='also write the result as JSON here')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions,
                        help='overrides of the config')


def workers_list(values: List[int]) -> List[int]:
    if any(n < 0 for n in values):
        raise UserError(f'--workers must be >= 0, got {values}')
    return values
