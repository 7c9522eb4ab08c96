"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, data checks,
and running distributed on machines without a GPU."""
import contextlib
import os
import os.path as osp
from typing import Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict

from .cfg_options import ConfigOptions

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


class UserError(Exception):
    """An error the user can fix; tools print it without a traceback."""


def parse_tool_args(parser, argv=None):
    """Add the options train.py and test.py share, parse, and export LOCAL_RANK."""
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions,
                        help='override config entries, e.g. train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(path: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    if not osp.isfile(path):
        near = ''
        folder = osp.dirname(path) or '.'
        if osp.isdir(folder):
            names = sorted(f for f in os.listdir(folder) if f.endswith('.py'))
            near = f' Configs in {folder}/: {", ".join(names)}' if names else ''
        raise UserError(f'config file not found: {path}.{near}')
    cfg = Config.fromfile(path)
    if cfg_options:
        for key, value in cfg_options.items():  # one at a time: the bad one is named
            try:
                cfg.merge_from_dict({key: value})
            except (KeyError, TypeError, IndexError) as e:  # mmengine's words for it
                raise UserError(f'--cfg-options: cannot set {key}: {_message(e)}') from e
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def tool_config(args) -> Config:
    """The config of a tool run (``train.py``, ``test.py``): loaded with
    ``--cfg-options`` and ``--work-dir``, its launcher set and checked."""
    from ..data import guard_loading
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    check_run_values(cfg)
    fit_workers(cfg)
    cfg.launcher = args.launcher
    check_launcher(args.launcher)
    dist_timeout(cfg)  # the default where the config sets none
    guard_loading(cfg)  # an unreadable image or label map is named, or skipped
    return cfg


def check_run_values(cfg: Config) -> None:
    """The loop lengths and loader sizes of a config (its own or as ``--cfg-options``
    set them), each checked with one line naming the key: mmengine meets a bad one as
    an assertion or a DataLoader traceback deep inside."""
    def need(key, value, low):
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f'{key} must be an integer >= {low}, got {value!r}')
    loop = cfg.get('train_cfg')
    if isinstance(loop, dict):
        for key in ('max_epochs', 'max_iters', 'val_interval', 'val_begin'):
            need(f'train_cfg.{key}', loop.get(key), 0 if key == 'val_begin' else 1)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if isinstance(loader, dict):
            need(f'{name}.batch_size', loader.get('batch_size'), 1)
            need(f'{name}.num_workers', loader.get('num_workers'), 0)
    hooks = cfg.get('custom_hooks')
    if hooks is not None and not (isinstance(hooks, (list, tuple)) and all(
            isinstance(h, dict) and 'type' in h for h in hooks)):
        raise UserError(f'custom_hooks must be a list of hook dicts (dict(type=...)), got '
                        f'{hooks!r}: --cfg-options custom_hooks.N.KEY=V sets a key of '
                        f'the N-th hook the config lists')


def fit_workers(cfg: Config) -> None:
    """Loader workers beyond the cores this process may use load no faster, and PyTorch
    warns about them at every loader start: as many workers as cores, said once."""
    from mmengine.logging import print_log
    try:
        cores = len(os.sched_getaffinity(0))  # what PyTorch's own check counts
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        workers = loader.get('num_workers') if isinstance(loader, dict) else None
        if isinstance(workers, int) and workers > cores:
            print_log(f'{name}.num_workers={workers} is more than the {cores} cores this '
                      f'process may use: {cores} workers', logger='current')
            loader.num_workers = cores


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
    fatal, skipped = coco_record_problems(data, image_dir)
    if skipped:
        from mmengine.logging import print_log
        print_log(f'{path} (read through {key}): the loader skips these records: '
                  + '; '.join(skipped), logger='current', level=30)
    if fatal:
        raise UserError(f'{path} (read through {key}): ' + '; '.join(fatal)
                        + '. Fix or remove these records.')


def coco_record_problems(data: dict, image_dir: Optional[str] = None):
    """(fatal, skipped): what is wrong with a COCO file's annotation and image
    records, one line per kind of problem with its count and the first record ids.
    Fatal: what stops mmdet's loader (a missing or malformed ``bbox``, a record that
    is not an object, an image file missing from ``image_dir``); skipped: what it
    passes over without a word (boxes of no area, unknown categories, annotations of
    no image)."""
    from collections import defaultdict
    images = {im.get('id'): im for im in data['images'] if isinstance(im, dict)}
    categories = {c.get('id') for c in data['categories'] if isinstance(c, dict)}
    found = defaultdict(list)  # (fatal, what) -> record ids
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
    return lines[True], lines[False]


def checkpoint_file(ref: str) -> str:
    """A local checkpoint for a path, URL or model-zoo name, with tool errors (a
    missing file, a failed download, an unknown name with the close names)."""
    from ..weights.model_zoo import ModelZooError, resolve_checkpoint
    try:
        return resolve_checkpoint(ref)
    except (FileNotFoundError, ModelZooError) as e:
        raise UserError(str(e)) from e


def readable_checkpoint(ref: str) -> str:
    """:func:`checkpoint_file`, then a safe load of it: a corrupt, empty or foreign
    file is a tool error here, before mmengine reads it with a raw traceback."""
    from ..weights.checkpoint import CheckpointError, safe_load
    path = checkpoint_file(ref)
    try:
        safe_load(path)
    except CheckpointError as e:
        raise UserError(str(e)) from e
    return path


def check_resume_checkpoint(path: str) -> None:
    """Refuse, before training starts, a file that ``--resume`` cannot continue from."""
    from ..weights.checkpoint import CheckpointError, safe_load
    try:
        ckpt = safe_load(path)
    except (CheckpointError, FileNotFoundError) as e:
        raise UserError(str(e)) from e
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or 'epoch' not in meta or 'iter' not in meta:
        raise UserError(
            f'{path}: not a training checkpoint of this toolbox (no meta epoch/iter, '
            f'as mmengine saves them), so there is no run to resume. To start a new '
            f'run from its weights, use --cfg-options load_from={path} without --resume.')


def check_launcher(launcher: str) -> None:
    """``--launcher pytorch`` / ``slurm`` outside the launcher that sets their
    environment fails deep in torch.distributed: say how to start instead."""
    if launcher == 'pytorch' and 'RANK' not in os.environ:
        raise UserError('--launcher pytorch needs the environment torchrun sets (RANK, '
                        'WORLD_SIZE, MASTER_ADDR): start with tools/dist_train.sh CONFIG '
                        'GPUS (tools/dist_test.sh for testing) or torchrun '
                        '--nproc_per_node=GPUS tools/train.py CONFIG --launcher pytorch; '
                        'on one process, leave --launcher out.')
    if launcher == 'slurm' and 'SLURM_PROCID' not in os.environ:
        raise UserError('--launcher slurm runs inside srun: use tools/slurm_train.sh '
                        '(tools/slurm_test.sh), or leave --launcher out on one process.')


def free_port() -> int:
    """A TCP port free on this machine now (for a process group's rendezvous)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Let ``--launcher pytorch`` run on machines without CUDA (gloo backend).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``; we start the process
    group ourselves, wrap the model without ``device_ids`` and use plain BatchNorm
    (SyncBN needs CUDA).
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    # The backend the run uses, as the logged environment and mmengine read it.
    cfg.setdefault('env_cfg', ConfigDict()).setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        from datetime import timedelta
        dist.init_process_group(backend='gloo', timeout=timedelta(seconds=dist_timeout(cfg)))
    wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper

    def no_syncbn(node):
        if isinstance(node, dict):
            if node.get('type') in ('SyncBN', 'MMSyncBN'):
                node['type'] = 'BN'
            for v in node.values():
                no_syncbn(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                no_syncbn(v)
    no_syncbn(cfg.model)


def error_summary(e: BaseException) -> str:
    """``Type: message`` on one line: the reason a decoder gave, for a message that
    names the file itself."""
    lines = str(e).strip().splitlines()
    return f'{type(e).__name__}: {lines[0] if lines else ""}'.strip()


def shrink_to_side(image, max_side: int, interpolation: str = 'area'):
    """``(image, scale)``: ``image`` resized down so that its longer side is at most
    ``max_side`` (``scale`` < 1), or itself and 1.0 when it fits or ``max_side`` is 0."""
    import mmcv
    side = max(image.shape[:2])
    if not max_side or side <= max_side:
        return image, 1.0
    scale = max_side / side
    return mmcv.imrescale(image, scale, interpolation=interpolation), scale


def read_image(path: str, what: str = 'image'):
    """The BGR image at ``path``, read before the work that needs it: a missing or
    undecodable file (truncated, empty, not an image) is a :class:`UserError` naming
    it, not a decoder's traceback later."""
    import mmcv
    if not osp.isfile(path):
        raise UserError(f'{what} not found: {path}')
    if osp.getsize(path) == 0:
        raise UserError(f'{what} {path} is empty (0 bytes)')
    reason = ''
    try:
        image = mmcv.imread(path)
    except Exception as e:  # noqa: BLE001 (cv2.error on an empty file, ...)
        image, reason = None, f' ({error_summary(e)})'
    if image is None:
        raise UserError(f'{what} {path}: cannot decode it as an image (corrupt, truncated '
                        f'or not an image file){reason}')
    return image


def prepare_output(path: str, flag: str = '--out') -> str:
    """Make sure ``path`` can be written before the work that produces it: its folder
    is created (as mmengine creates work dirs); one that cannot be is an error now,
    not after minutes of computation."""
    if osp.isdir(path):
        raise UserError(f'{flag} {path} is a folder; give a file path in it')
    folder = osp.dirname(osp.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f'{flag} {path}: cannot create its folder {folder} '
                        f'({e.strerror or e})') from e
    if not os.access(folder, os.W_OK):
        raise UserError(f'{flag} {path}: the folder {folder} is not writable')
    return path


@contextlib.contextmanager
def distributed_run(timeout_s: Optional[float] = None, resume: Optional[str] = None):
    """Around a tool's work: destroy the process group (if any) before the process
    exits, after a barrier when every process finished its work (not when one failed:
    the others may never arrive). Left to the interpreter's exit, gloo's threads were
    torn down unjoined in some 2-process CPU runs (3 of about 40 launches here):
    'terminate called without an active exception', SIGABRT, a failed exit code after a
    run that had saved everything.

    A collective that timed out (``timeout_s``: the configured timeout) or lost a peer
    becomes a :class:`UserError` naming the ranks that did not answer and the
    ``resume`` command (``engine/stalled_rank.py``)."""
    import torch.distributed as dist

    from ..engine.stalled_rank import explain_peer_failure, peer_failure_kind
    finished = False
    try:
        yield
        finished = True
    except RuntimeError as e:
        if dist.is_available() and dist.is_initialized() and peer_failure_kind(e):
            raise UserError(explain_peer_failure(e, timeout_s, resume)) from e
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def dist_timeout(cfg: Config) -> float:
    """``env_cfg.dist_cfg.timeout`` in seconds, set to the default where unset (the
    process group's collectives wait this long for a rank; PyTorch's own default, 30
    minutes, kept a stalled run blocked that long)."""
    from ..engine.stalled_rank import DEFAULT_TIMEOUT_S
    env = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env.setdefault('dist_cfg', ConfigDict(backend='nccl'))
    timeout = dist_cfg.setdefault('timeout', DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UserError(f'env_cfg.dist_cfg.timeout must be a number of seconds > 0, got '
                        f'{timeout!r}')
    return float(timeout)


def build_model(cfg: Config) -> torch.nn.Module:
    """The config's model as mmengine's Runner builds it (in the config's toolbox
    scope, with the top-level ``data_preprocessor`` where the model has none), in eval
    mode: for the tools that use a model without a Runner (FLOPs, routing figures,
    export)."""
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    if cfg.get('data_preprocessor'):
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model).eval()


def add_hook(cfg: Config, hook: dict) -> None:
    """``hook`` appended to the config's ``custom_hooks`` unless one of its type is
    there already (the config's own settings win)."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == hook['type'] for h in hooks):
        hooks.append(hook)
    cfg.custom_hooks = hooks


def log_memory_footprint(cfg: Config) -> None:
    """Log the GPU memory the process holds (peak reserved, CUDA graphs' pools
    included) as ``memory``, instead of mmengine's live-tensor peak, where the config
    keeps mmengine's log processor."""
    processor = cfg.get('log_processor') or ConfigDict()
    if processor.get('type', 'LogProcessor') == 'LogProcessor':
        cfg.log_processor = dict(processor, type='FootprintLogProcessor')


def build_runner(cfg: Config):
    """mmengine's Runner for ``cfg``. A value the components refuse while they are built
    (a hook's momentum given as text, an unknown type name) is a :class:`UserError`
    naming the component and the reason (mmengine prefixes the class), not a traceback
    through the registry."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    with config_errors('the config could not be built'):
        if 'runner_type' in cfg:
            return RUNNERS.build(cfg)
        return Runner.from_cfg(cfg)


@contextlib.contextmanager
def config_errors(what: str, active=lambda: True):
    """Inside: a ``TypeError``, ``ValueError``, ``AssertionError`` or ``KeyError`` (what
    components raise for a value of the wrong type or range, an unknown type name)
    becomes a :class:`UserError` saying ``what`` and the reason, while ``active()``
    (e.g. until the first training iteration: later ones are not the config's)."""
    from ..errors import ArgumentError
    from ..weights.checkpoint import CheckpointError
    try:
        yield
    except (ArgumentError, CheckpointError):
        raise  # one line already; the tools print them
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        if not active():
            raise
        text = _message(e) or type(e).__name__
        raise UserError(f'{what}: {text.splitlines()[0]}. Check the values the config and '
                        f'--cfg-options give it.') from e


def _message(e: Exception) -> str:
    """An exception's message; a KeyError's str() quotes it, its argument does not."""
    return str(e.args[0] if isinstance(e, KeyError) and e.args else e)


def use_amp(cfg: Config) -> None:
    """``--amp``: mixed precision (fp16, dynamic loss scale) for a config that trains
    in fp32; a config that already names a wrapper type keeps it."""
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')


def fit_to_device(cfg: Config) -> None:
    """Mixed precision needs a GPU: on a CPU-only machine train in fp32 instead (and
    load batches without pinned memory).

    The configs ask for AmpOptimWrapper (the official recipes train in fp16); mmengine
    refuses it without CUDA, which would make every config unusable on CPU.
    """
    if torch.cuda.is_available():
        return
    # Pinned memory only helps a copy to a GPU (PyTorch warns when there is none).
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if isinstance(cfg.get(key), dict) and cfg[key].get('pin_memory'):
            cfg[key].pin_memory = False
    wrapper = cfg.get('optim_wrapper')
    if not wrapper or wrapper.get('type') != 'AmpOptimWrapper':
        return
    from mmengine.logging import print_log
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        wrapper.pop(key, None)
    wrapper.type = 'OptimWrapper'
    print_log('No CUDA device: mixed precision (AmpOptimWrapper) is off, training in fp32.',
              logger='current', level=30)
