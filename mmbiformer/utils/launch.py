"""What the tools share: their arguments, loading and fitting a config, building its
model and runner. The rest of a tool's set-up lives by concern, each imported from its
own module: data checks (``data_checks``; ``data.config_walk``), checkpoints
(``weights.checkpoint_refs``), process groups (``distributed``), images (``images``)
and the errors (``mmbiformer.errors``)."""
import contextlib
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict

from ..data import guard_loading, unguard_loading
from ..errors import UserError
from .cfg_options import ConfigOptions
from ..data.config_walk import LOADER_KEYS, evaluators, type_name
from .distributed import check_launcher, dist_timeout


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
    _undo_tool_edits(cfg)  # a config our tools dumped loads as its source did
    if cfg_options:
        for key, value in cfg_options.items():  # one at a time: the bad one is named
            _check_option_type(cfg, key, value)
            try:
                cfg.merge_from_dict({key: value})
            except (KeyError, TypeError, IndexError) as e:  # mmengine's words for it
                raise UserError(f'--cfg-options: cannot set {key}: {_message(e)}') from e
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _check_option_type(cfg: Config, key: str, value) -> None:
    """``--cfg-options`` text where the config holds a number (``lr=1e-3)``: a typo that
    mmengine passes on as a string, which fails much later without the key's name)."""
    current = cfg._cfg_dict  # a ConfigDict (a dict)
    for part in key.split('.'):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, (list, tuple)) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return  # a new key: nothing to compare with
    number = isinstance(current, (int, float)) and not isinstance(current, bool)
    if number and isinstance(value, str):
        raise UserError(f'--cfg-options {key}={value}: not a number (the config has '
                        f'{current!r} there)')


def _undo_tool_edits(cfg: Config) -> None:
    """What the tools add to a run's config, which the config the run dumps
    (``work_dir/<config>.py``) keeps: the loaders' ``CheckedLoad`` wrappers and
    ``tools/test.py --out``'s ``SafeDumpResults``. Taken out, so that every tool reads a
    dumped config as it read its source (the tools add them again where they apply)."""
    unguard_loading(cfg)
    evaluators = cfg.get('test_evaluator')
    if isinstance(evaluators, (list, tuple)):
        kept = [e for e in evaluators if type_name(e) != 'SafeDumpResults']
        if len(kept) != len(evaluators):
            cfg.test_evaluator = kept[0] if len(kept) == 1 else kept


def tool_config(args, loaders=LOADER_KEYS) -> Config:
    """The config of a tool run (``train.py``, ``test.py``): loaded with
    ``--cfg-options`` and ``--work-dir``, its launcher set and checked; ``loaders``:
    the data loaders the tool runs (their workers are fitted to the machine)."""
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    check_run_values(cfg)
    fit_workers(cfg, loaders)
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
    for name in LOADER_KEYS:
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


def worker_budget() -> tuple:
    """(workers one training process can keep busy, cores, processes on this machine):
    the cores this process may use shared among the machine's processes, less two for
    the main process and its pinning thread where there are four or more: with every
    core on a worker the main process starves, and the loader delivers less than with
    two fewer workers (docs/benchmark_history.md, run 12)."""
    try:
        cores = len(os.sched_getaffinity(0))  # what PyTorch's own check counts
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    processes = max(1, int(os.environ.get('LOCAL_WORLD_SIZE', '1') or 1))
    share = max(1, cores // processes)
    return (share - 2 if share >= 4 else share), cores, processes


def fit_workers(cfg: Config, loaders=LOADER_KEYS) -> None:
    """Loader workers beyond what this process can keep busy load no faster (and PyTorch
    warns about more than the cores at every loader start): the budget of
    :func:`worker_budget`, said once for each of ``loaders`` (those a tool runs)."""
    from mmengine.logging import print_log
    budget, cores, processes = worker_budget()
    for name in loaders:
        loader = cfg.get(name)
        workers = loader.get('num_workers') if isinstance(loader, dict) else None
        if isinstance(workers, int) and workers > budget:
            shared = f' shared by {processes} processes' if processes > 1 else ''
            kept = ', two left for the main process' if budget < cores // processes else ''
            print_log(f'{name}.num_workers={workers} is more than this process can keep '
                      f'busy ({cores} cores{shared}{kept}): {budget} workers',
                      logger='current')
            loader.num_workers = budget


def prepare_output(path: str, flag: str = '--out') -> str:
    """Make sure ``path`` can be written before the work that produces it: its folder
    is created (as mmengine creates work dirs); one that cannot be is an error now,
    not after minutes of computation."""
    if osp.isdir(path):
        raise UserError(f'{flag} {path} is a folder; give a file path in it')
    folder = osp.dirname(osp.abspath(path))
    blocking = folder
    while blocking and not osp.exists(blocking):
        blocking = osp.dirname(blocking)
    if blocking and not osp.isdir(blocking):  # makedirs says only "File exists"
        raise UserError(f'{flag} {path}: cannot create its folder {folder}: {blocking} is '
                        f'a file, not a folder. Give a path elsewhere, or move that file.')
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f'{flag} {path}: cannot create its folder {folder} '
                        f'({e.strerror or e})') from e
    if not os.access(folder, os.W_OK):
        raise UserError(f'{flag} {path}: the folder {folder} is not writable')
    return path


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
    On a GPU without bf16 arithmetic (V100, T4, RTX 20: compute capability below 8.0),
    a config that asks for bf16 is warned: PyTorch emulates bf16 there, several times
    slower than fp16.
    """
    if torch.cuda.is_available():
        _warn_emulated_bf16(cfg)
        return
    # Pinned memory only helps a copy to a GPU (PyTorch warns when there is none).
    for key in LOADER_KEYS:
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


def _warn_emulated_bf16(cfg: Config) -> None:
    wrapper = cfg.get('optim_wrapper') or {}
    if (wrapper.get('type') != 'AmpOptimWrapper'
            or str(wrapper.get('dtype')).replace('torch.', '') not in ('bfloat16', 'bf16')):
        return
    major, minor = torch.cuda.get_device_capability()
    if major >= 8:
        return
    from mmengine.logging import print_log
    print_log(f'optim_wrapper.dtype is bfloat16, and {torch.cuda.get_device_name()} '
              f'(compute capability {major}.{minor}) has no bf16 arithmetic: PyTorch '
              f'emulates it, several times slower than fp16. Train in fp16: '
              f'--cfg-options optim_wrapper.dtype=float16 (with a dynamic loss scale, '
              f'as --amp sets).', logger='current', level=30)
