"""Training-iteration benchmark of whole configs: the real training loop (data pipeline,
loader workers, AMP, optimizer) on generated data of the config's input size.

Each model runs in its own process (``tools/benchmark.py pipeline``), so that one
model's cuDNN plans and allocator state cannot speed up the next one's first pass.
The loop runs two passes over the same batches (the sampler's shuffle is turned off):

* the **first pass** meets every padded input size for the first time;
* the **steady state** (second pass) repeats the same batches in the same order, so
  every size has been seen. Iteration ``i`` of both passes has the same input, and
  ``first[i] - steady[i]`` is what meeting that size the first time cost.

Every iteration is split into *data* (waiting for the loader, plus other hooks' work
between iterations, as mmengine's ``data_time``), *forward+backward* (``train_step`` up
to the optimizer step: data preprocessor, forward, losses, backward) and *step*
(optimizer step and zero_grad). The clock synchronises with the GPU once per
iteration, at its end (where training's loss logging reads the losses anyway), so
that, as in training, the host may queue the optimizer step while the GPU still runs
the backward: the split is then the host's, and only the iteration's total is the
GPU's. ``phase_sync`` synchronises at every boundary as well: each part then holds its
own GPU work, at the cost of that overlap. ``pass_sync`` synchronises only at the end of
each pass, as training with ``AsyncRuntimeInfoHook`` waits for the GPU nowhere: the
host prepares the next batch while the GPU still runs the step, so each iteration's
figures are the host's and only a pass's total is the GPU's.
"""
import functools
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch

from ..engine.shape_graphs import graph_pool_spare
from ..errors import UserError

# dataset type -> (generator kind, nominal image size (H, W) of the real data at the
# configs' scale: COCO resized to 1333x800, ADE20K around 512 short side, ImageNet)
DATA_KINDS = {'CocoDataset': ('coco', (800, 1216)),
              'ADE20KDataset': ('ade20k', (512, 683)),
              'ImageNet': ('imagenet', (256, 256))}
# Iterations at the start of a pass left out of the per-iteration new-size figure:
# the first ones also pay one-off costs (CUDA context, allocator growth, lazy init).
SKIP_FIRST = 2


def load_any_config(name: str, cfg_options: Optional[dict] = None):
    """A config by path, or a toolbox's own by ``mmdet::swin/...py`` (as ``_base_``
    names them), with ``cfg_options`` merged."""
    if '::' in name:
        from mmengine.hub import get_config
        try:
            cfg = get_config(name)
        except Exception as e:  # mmengine raises plain errors for unknown names
            raise UserError(f'cannot load config {name}: {e}') from e
    else:
        from ..utils.launch import load_config
        cfg = load_config(name)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def loader_dataset(cfg, loader: str = 'train_dataloader') -> dict:
    """The dataset dict of ``loader`` (the train loader by default), dataset wrappers
    (Repeat/ClassBalanced) opened."""
    from ..data.config_walk import datasets
    found = [ds for _, ds in datasets(cfg, [loader])]
    if len(found) != 1:
        raise UserError(f'pipeline benchmark: {loader} reads {len(found)} datasets '
                        f'(ConcatDataset?); generated data can stand in for one only. '
                        f'Pass --data-root with data in its layout instead.')
    return found[0]


def data_kind(cfg):
    """(generator kind, nominal (H, W)) for the config's train dataset."""
    ds_type = loader_dataset(cfg).get('type')
    if ds_type not in DATA_KINDS:
        raise UserError(f'pipeline benchmark: train dataset type {ds_type!r} has no data '
                        f'generator; supported: {", ".join(sorted(DATA_KINDS))}. Pass '
                        f'--data-root with data in its layout instead.')
    return DATA_KINDS[ds_type]


def loader_key(args) -> str:
    """The loader a run times: the test loader under ``--test``, else the train loader."""
    return 'test_dataloader' if getattr(args, 'test', False) else 'train_dataloader'


def batch_size(cfg, loader: str = 'train_dataloader') -> int:
    return int(cfg[loader].batch_size)


def make_data(kind: str, root: str, images: int, size, val_images: int = 1) -> str:
    """Generated data with ``images`` training and ``val_images`` validation images
    (written once per root)."""
    from ..testing import MAKERS
    stamp = osp.join(root, '.mmbiformer_bench')
    want = f'{kind} {images} {val_images} {size[0]}x{size[1]}'
    if osp.isfile(stamp) and open(stamp).read() == want:
        return root
    if kind == 'imagenet':  # per class
        MAKERS[kind](root, num_train=max(1, images // 4), num_val=max(1, val_images // 4),
                     size=size)
    else:
        MAKERS[kind](root, num_train=images, num_val=val_images, size=size)
    with open(stamp, 'w') as f:
        f.write(want)
    return root


def benchmark_data(args, cfg, images: int):
    """(kind, nominal (H, W), root) of the data a run reads: ``--data-root``, or data
    generated at the config's input size (``--size`` overrides) with ``images``
    training images (``--test``: validation images), written once under the work dir."""
    kind, size = data_kind(cfg)
    size = tuple(args.size) if args.size else size
    if args.data_root:
        return kind, size, args.data_root
    test = getattr(args, 'test', False)
    root = osp.join(args.work_dir, f'data_{kind}_{size[0]}x{size[1]}' + ('_val' if test else ''))
    if test:
        return kind, size, make_data(kind, root, 1, size, val_images=images)
    return kind, size, make_data(kind, root, images, size)


def point_at_data(cfg, kind: str, root: str, loader: str = 'train_dataloader') -> None:
    """Point ``loader``'s dataset (and, for the test loader, its evaluators' annotation
    files) at generated data under ``root``."""
    ds = loader_dataset(cfg, loader)
    root = root.rstrip('/') + '/'
    ds['data_root'] = root + 'ADEChallengeData2016' if kind == 'ade20k' else root
    if loader == 'test_dataloader':
        from ..data.config_walk import evaluators
        for _, ev in evaluators(cfg, [loader]):
            if isinstance(ev, dict) and ev.get('ann_file'):
                ev['ann_file'] = root + 'annotations/instances_val2017.json'


def _common_run(cfg, work_dir: str, loader_key: str, workers: Optional[int],
                drop: tuple) -> None:
    """What both benchmarks change: the work dir, the loops of ``drop`` gone, no
    checkpoints, no pretrained weights (offline; a fresh model's weights cost the same
    to run), ``loader_key``'s batches in order."""
    cfg.work_dir = work_dir
    for key in drop:
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.load_from, cfg.resume = None, False
    model = cfg.model
    if model.get('pretrained'):
        model.pretrained = None
    if isinstance(model.get('backbone'), dict):
        model.backbone.init_cfg = None
    loader = cfg[loader_key]
    if 'shuffle' in loader.sampler:
        loader.sampler.shuffle = False
    if workers is not None:
        loader.num_workers = workers
        loader.persistent_workers = workers > 0


def prepare(cfg, iters: int, work_dir: str, amp: bool, workers: Optional[int]) -> None:
    """Turn a config into the benchmark run: two passes of ``iters`` iterations, no
    validation, no checkpoints, no pretrained weights (offline), unshuffled batches."""
    from ..utils.launch import use_amp
    _common_run(cfg, work_dir, 'train_dataloader', workers,
                ('val_dataloader', 'val_cfg', 'val_evaluator',
                 'test_dataloader', 'test_cfg', 'test_evaluator'))
    loop = cfg.train_cfg
    if loop.get('type', '') == 'IterBasedTrainLoop' or 'max_iters' in loop:
        loop.update(max_iters=2 * iters, val_interval=10**9)
    else:
        loop.update(max_epochs=2, val_interval=10**9)
    # Only the first phase of a schedule fits a run this short: a later phase (begin >
    # 0; its end often left to default to the run's end) would end before it begins.
    schedulers = cfg.get('param_scheduler')
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if schedulers:
        cfg.param_scheduler = [s for s in schedulers if not s.get('begin', 0)]
    if amp:
        use_amp(cfg)


class IterationClock:
    """Times of each training iteration: data, forward+backward, step (seconds)."""

    def __init__(self, phase_sync: bool = False, pass_sync: bool = False):
        if phase_sync and pass_sync:
            raise ValueError('IterationClock: phase_sync or pass_sync, not both')
        self.phase_sync = phase_sync
        self.pass_sync = pass_sync
        self.rows: List[Dict[str, float]] = []
        self.peaks: List[float] = []  # peak GiB of each pass
        self.reserved: List[float] = []  # peak GiB the allocator held (reserved), each pass
        self.pass_of_iter: List[int] = []
        # Seconds from a run's start (``before_run``) to its first iteration, by pass:
        # model set-up, work done ahead (captures, compiles) and the loader's start.
        self.setup: Dict[int, float] = {}
        self._last_end = self._run_start = None
        self._start = self._step = None

    @staticmethod
    def now(sync: bool = True) -> float:
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def begin_pass(self) -> None:
        self.peaks.append(0.0 if torch.cuda.is_available() else float('nan'))
        self.reserved.append(self.peaks[-1])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def _note_peak(self) -> None:
        # Read after every iteration: mmengine's log processor resets the peak
        # statistics whenever it logs, so the peak of a pass must be collected as it goes.
        if torch.cuda.is_available():
            reserved = torch.cuda.max_memory_reserved()
            # The pools' free bytes now may be bytes that were allocated at the peak
            # (warm-ups and captures allocate from the pools): never count above what
            # the allocator held.
            peak = min(torch.cuda.max_memory_allocated() + graph_pool_spare(), reserved)
            self.peaks[-1] = max(self.peaks[-1], peak / 2**30)
            self.reserved[-1] = max(self.reserved[-1], reserved / 2**30)

    def run_start(self) -> None:
        self._run_start = self.now()

    def iter_start(self) -> None:
        self._start = self.now(self.phase_sync or self._run_start is not None)
        self._step = None
        if self._run_start is not None:
            self.setup[len(self.peaks) - 1] = self._start - self._run_start
            self._run_start = None

    def step_start(self) -> None:
        if self._start is not None and self._step is None:
            self._step = self.now(self.phase_sync)

    def iter_end(self, last_of_pass: bool = False) -> None:
        end = self.now(not self.pass_sync or last_of_pass)
        step = self._step or end
        data = self._start - self._last_end if self._last_end is not None else float('nan')
        self.rows.append(dict(data=data, fb=step - self._start, step=end - step))
        self._note_peak()
        self.pass_of_iter.append(len(self.peaks) - 1)
        # The next data interval starts after this bookkeeping (the memory snapshot
        # behind graph_pool_spare() is not the loader's time).
        self.restart_data()

    def restart_data(self) -> None:
        """The next iteration's data interval starts now (work since is not the loader's)."""
        self._last_end, self._start = self.now(sync=False), None


def prepare_test(cfg, work_dir: str, amp: bool, workers: Optional[int]) -> None:
    """Turn a config into the evaluation benchmark: the test loop alone, run twice
    (``tools/test.py``'s work: data, model, evaluator), on a fresh model."""
    _common_run(cfg, work_dir, 'test_dataloader', workers,
                ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler',
                 'val_dataloader', 'val_cfg', 'val_evaluator'))
    if amp:  # mmengine's TestLoop runs the model under autocast with fp16=True
        cfg.test_cfg = dict(cfg.get('test_cfg') or dict(type='TestLoop'), fp16=True)


def run_start_hook(clock: IterationClock):
    """A hook that starts the clock's set-up time as a run (``runner.train()`` or
    ``runner.test()``) begins, before every other hook's ``before_run``."""
    from mmengine.hooks import Hook

    class _Run(Hook):
        priority = 'HIGHEST'

        def before_run(self, runner):
            clock.run_start()

    return _Run()


def test_clock_hooks(clock: IterationClock) -> list:
    """The test loop's clock: each test epoch a pass, each iteration data (waiting for
    the loader) and "forward" (``test_step`` and the evaluator's ``process``; the
    clock's step part stays 0)."""
    from mmengine.hooks import Hook

    class _Start(Hook):
        priority = 'LOWEST'

        def before_test_epoch(self, runner):
            clock.begin_pass()
            clock._last_end = None

        def before_test_iter(self, runner, batch_idx, data_batch=None):
            clock.iter_start()

    class _End(Hook):
        priority = 'HIGHEST'

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            clock.iter_end()

    return [run_start_hook(clock), _Start(), _End()]


def clock_hooks(clock: IterationClock, iters_per_pass: Optional[int]):
    """Two hooks: one that runs last before an iteration (the clock starts right before
    ``train_step``) and one that runs first after it."""
    from mmengine.hooks import Hook

    def per_pass(runner) -> int:
        return iters_per_pass or len(runner.train_dataloader)

    class _Start(Hook):
        priority = 'LOWEST'

        def before_train(self, runner):
            wrapper = runner.optim_wrapper
            step = wrapper.step

            @functools.wraps(step)  # keeps mmengine's scheduler counter mark
            def timed_step(*args, **kwargs):
                clock.step_start()
                return step(*args, **kwargs)
            wrapper.step = timed_step
            clock._last_end = None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter % per_pass(runner) == 0:
                clock.begin_pass()
            clock.iter_start()

    class _End(Hook):
        priority = 'HIGHEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            clock.iter_end(last_of_pass=(runner.iter + 1) % per_pass(runner) == 0)

    return [run_start_hook(clock), _Start(), _End()]


def profile_hook(clock: IterationClock, iters: int, start: int, path: str):
    """A hook that records ``iters`` iterations from iteration ``start`` with PyTorch's
    profiler and writes to ``path`` the operators by host time and the kernels by
    GPU time: where a step's time goes, on either side. The profiled iterations
    (slowed by the profiler) and the writing of the tables are left out of ``clock``'s
    figures. Iterations count over training, or over the test loop's passes."""
    from mmengine.hooks import Hook
    from torch.profiler import ProfilerActivity, profile

    class _Profile(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.prof = None
            self.tests = 0  # test iterations so far, over every pass

        def _begin(self, i):
            if i == start and int(os.environ.get('RANK', 0)) == 0:
                activities = [ProfilerActivity.CPU] + (
                    [ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
                self.prof = profile(activities=activities, record_shapes=True)
                self.prof.__enter__()

        def _end(self, i):
            if self.prof is None or i + 1 < start + iters:
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.prof.__exit__(None, None, None)
            for row in clock.rows[-iters:]:
                row['profiled'] = True
            table = self.prof.key_averages()
            shapes = self.prof.key_averages(group_by_input_shape=True)
            with open(path, 'w') as f:
                for key in ('cpu_time_total', 'self_cpu_time_total', 'self_cuda_time_total'):
                    f.write(f'== {iters} iterations from {start}, by {key}\n')
                    f.write(table.table(sort_by=key, row_limit=40, max_name_column_width=70))
                    f.write('\n')
                f.write('== by self_cpu_time_total and input shapes\n')
                f.write(shapes.table(sort_by='self_cpu_time_total', row_limit=40,
                                     max_name_column_width=60, max_shapes_column_width=80))
            self.prof = None
            clock.restart_data()

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._begin(runner.iter)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._end(runner.iter)

        def before_test_iter(self, runner, batch_idx, data_batch=None):
            self._begin(self.tests)

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._end(self.tests)
            self.tests += 1

    return _Profile()


def _finite_sum(values) -> float:
    """The sum of the parts that were timed (an untimed part is NaN)."""
    return sum(v for v in values if v == v)


def summarise(clock: IterationClock, batch: int, world: int) -> dict:
    """Means per pass, img/s, peak memory, and the per-iteration new-size cost."""
    passes = []
    for p in range(len(clock.peaks)):
        rows = [r for r, q in zip(clock.rows, clock.pass_of_iter)
                if q == p and not r.get('profiled')]
        if not rows:
            continue
        mean = {k: statistics.fmean(r[k] for r in rows if r[k] == r[k]) if any(
            r[k] == r[k] for r in rows) else float('nan') for k in ('data', 'fb', 'step')}
        total = _finite_sum(mean.values())
        # The later half: an epoch's figure as a training log reads it, once its first
        # iterations (one-off costs, new sizes) have passed.
        later = [_finite_sum(r[k] for k in ('data', 'fb', 'step'))
                 for r in rows[len(rows) // 2:]]
        passes.append(dict(iters=len(rows), total=total, img_s=batch * world / total,
                           setup_s=clock.setup.get(p, float('nan')),
                           later_total=statistics.fmean(later), peak_gib=clock.peaks[p],
                           reserved_gib=clock.reserved[p], **mean))
    first = [r['fb'] for r, q in zip(clock.rows, clock.pass_of_iter) if q == 0]
    second = [r['fb'] for r, q in zip(clock.rows, clock.pass_of_iter) if q == 1]
    profiled = [r.get('profiled', False) for r, q in zip(clock.rows, clock.pass_of_iter)
                if q == 1]
    extra = [a - b for a, b, skip in zip(first, second, profiled) if not skip]
    extra = extra[SKIP_FIRST:] or extra  # too short a run: all iterations
    return dict(passes=passes,
                new_size_extra_median=statistics.median(extra) if extra else float('nan'),
                new_size_extra_max=max(extra) if extra else float('nan'),
                fb_first=first, fb_steady=second)


def cap_memory(card_gib: float) -> None:
    """Let this process's allocator use what a card of ``card_gib`` GiB would leave
    it: that, less the CUDA context this process holds (outside the allocator, and a
    smaller card holds one too)."""
    if not torch.cuda.is_available():
        raise UserError('--memory-cap caps a GPU\'s memory: it needs one')
    free, total = torch.cuda.mem_get_info()
    context = total - free - torch.cuda.memory_reserved()
    if card_gib * 2**30 > total:
        raise UserError(f'a {card_gib:g} GiB card is larger than this GPU '
                        f'({total / 2**30:.1f} GiB)')
    torch.cuda.set_per_process_memory_fraction(max(card_gib * 2**30 - context, 0) / total)


def run_single(args) -> dict:
    """Build and run one model (this process): training, or under ``args.test`` the
    test loop twice; the summary as a dict."""
    import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registries)
    from ..utils.distributed import setup_cpu_distributed
    from ..utils.launch import build_runner, fit_to_device
    test = bool(getattr(args, 'test', False))
    loader = loader_key(args)
    cfg = load_any_config(args.config, args.cfg_options)
    if args.batch:
        cfg[loader].batch_size = args.batch
    batch = batch_size(cfg, loader)
    world = int(os.environ.get('WORLD_SIZE', 1))
    kind, size, root = benchmark_data(args, cfg, args.iters * batch * world)
    point_at_data(cfg, kind, root, loader)
    cap = getattr(args, 'memory_cap', None)
    if cap:
        cap_memory(cap)
        # A trial of ``fits`` reads the images of its own iterations out of the data
        # made for the largest trial (an epoch of all of them would be far longer).
        loader_dataset(cfg, loader)['indices'] = args.iters * batch * world
    name = osp.splitext(osp.basename(args.config.split('::')[-1]))[0]
    work_dir = osp.join(args.work_dir, name + ('_test' if test else ''))
    if test:
        prepare_test(cfg, work_dir, args.amp, args.workers)
        ours = (cfg.model.get('backbone') or {}).get('type') == 'BiFormer'
        if getattr(args, 'cuda_graph', False) and ours:
            from ..engine.backbone_runtime_hook import with_inference_graphs
            with_inference_graphs(cfg)  # as tools/test.py --cuda-graph
    else:
        prepare(cfg, args.iters, work_dir, args.amp, args.workers)
    cfg.launcher = 'pytorch' if world > 1 else 'none'
    fit_to_device(cfg)
    setup_cpu_distributed(cfg, cfg.launcher)
    runner = build_runner(cfg)
    clock = IterationClock(phase_sync=args.phase_sync,
                           pass_sync=bool(getattr(args, 'pass_sync', False)) and not test)
    if test:
        hooks = test_clock_hooks(clock)
    else:
        epoch_based = 'max_epochs' in cfg.train_cfg
        hooks = clock_hooks(clock, None if epoch_based else args.iters)
    profile_start = args.iters + args.iters // 2  # the middle of the steady pass
    if args.profile:
        path = osp.join(args.work_dir, f'profile_{osp.basename(work_dir)}.txt')
        hooks.append(profile_hook(clock, args.profile, profile_start, path))
    for hook in hooks:
        runner.register_hook(hook, priority=hook.priority)
    if test:
        for _ in range(2):
            runner.test()
    else:
        runner.train()
    result = summarise(clock, batch, world)
    if torch.cuda.is_available() and not test:
        from .memory import run_parts
        result['memory'] = run_parts(runner.model,
                                     getattr(runner.optim_wrapper, 'optimizer', None))
    wrapper = None if test else cfg.optim_wrapper.get('type', 'OptimWrapper')
    result.update(config=args.config, batch=batch, world=world, size=list(size),
                  phase_sync=bool(args.phase_sync), pass_sync=clock.pass_sync,
                  mode='test' if test else 'train',
                  workers=int(cfg[loader].num_workers), optim_wrapper=wrapper,
                  device=torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')
    return result


class RunFailed(UserError):
    """A model's run ended in an error; ``log``: the path of its whole output."""

    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


def run_in_subprocess(args, config: str, gpus: int, tool: str) -> dict:
    """``run_single`` for ``config`` in a fresh process (``gpus`` > 1: under torchrun):
    ``tool pipeline CONFIG --single OUT ...``, ``tool`` being the script that runs
    :func:`run_single` for ``--single`` (``tools/benchmark.py``)."""
    out = osp.join(args.work_dir, f'result_{len(os.listdir(args.work_dir))}.json')
    single = ['pipeline', config, '--single', out, '--iters', str(args.iters),
              '--work-dir', args.work_dir] + (['--amp'] if args.amp else [])
    if args.phase_sync:
        single.append('--phase-sync')
    if getattr(args, 'pass_sync', False):
        single.append('--pass-sync')
    if getattr(args, 'test', False):
        single.append('--test')
    if getattr(args, 'cuda_graph', False):
        single.append('--cuda-graph')
    for flag, value in (('--batch', args.batch), ('--workers', args.workers),
                        ('--data-root', args.data_root), ('--profile', args.profile),
                        ('--memory-cap', getattr(args, 'memory_cap', None))):
        if value is not None:
            single += [flag, str(value)]
    if args.size:
        single += ['--size'] + [str(s) for s in args.size]
    if args.cfg_options:
        single += ['--cfg-options'] + [f'{k}={_fmt(v)}' for k, v in args.cfg_options.items()]
    entry = [tool]
    if gpus > 1:
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
               '--master_port', str(29500 + os.getpid() % 1000)] + entry + single
    else:
        cmd = [sys.executable] + entry + single
    log = osp.join(args.work_dir, osp.basename(out)[:-5] + '.log')
    with open(log, 'w') as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if code != 0 or not osp.isfile(out):
        with open(log) as f:
            tail = ''.join(f.readlines()[-25:])
        raise RunFailed(f'pipeline benchmark of {config} failed (exit {code}); log '
                        f'{log} ends:\n{tail}', log)
    with open(out) as f:
        return json.load(f)


def row_name(config: str) -> str:
    """A config as a reader knows it: ``mmdet::...`` names as given, paths relative."""
    if '::' in config:
        return config
    rel = osp.relpath(config)
    return rel if not rel.startswith('..') else osp.basename(config)


def _fmt(v) -> str:
    return repr(v) if not isinstance(v, str) else v


def table(results: List[dict]) -> str:
    """The printed comparison: one block of rows per model."""
    test = results[0].get('mode') == 'test'
    work = 'forward' if test else 'fwd+bwd'
    lines = [f'{"model":<58} {"pass":<7} {"set-up":>7} {"iters":>5} {"data":>7} {work:>8} '
             f'{"step":>7} {"s/iter":>7} {"later":>7} {"img/s":>7} {"peak GiB":>8} '
             f'{"reserved":>8}']
    for r in results:
        unit = 'GPUs' if r['device'] != 'CPU' else 'processes'
        name = row_name(r['config']) + (f' x{r["world"]} {unit}' if r['world'] > 1 else '')
        for label, p in zip(('first', 'steady'), r['passes']):
            lines.append(f'{name:<58} {label:<7} {p.get("setup_s", float("nan")):7.2f} '
                         f'{p["iters"]:>5} {p["data"]:7.3f} '
                         f'{p["fb"]:8.3f} {p["step"]:7.3f} {p["total"]:7.3f} '
                         f'{p.get("later_total", float("nan")):7.3f} {p["img_s"]:7.1f} '
                         f'{p["peak_gib"]:8.2f} {p.get("reserved_gib", float("nan")):8.2f}')
            name = ''
        lines.append(f'{"":<58} new input size: +{1000 * r["new_size_extra_median"]:.0f} ms '
                     f'{work} (median per iteration, first pass - steady, same batch), '
                     f'max +{1000 * r["new_size_extra_max"]:.0f} ms')
    for r in results:  # where the memory sits at the run's end (GPU runs)
        if r.get('memory'):
            lines.append(f'memory of {row_name(r["config"])}, GiB: ' + ', '.join(
                f'{k} {v:.2f}' for k, v in r['memory'].items()))
    for r in results:  # multi-GPU scaling against 1 GPU: steady state, then epoch 1
        one = [o for o in results if o['config'] == r['config'] and o['world'] == 1]
        if r['world'] > 1 and one:
            ratio = r['passes'][-1]['img_s'] / one[0]['passes'][-1]['img_s']
            later = (r['world'] * one[0]['passes'][0]['later_total']
                     / r['passes'][0]['later_total'])
            lines.append(f'scaling {row_name(r["config"])}: {r["world"]} vs 1: {ratio:.2f}x '
                         f'steady-state img/s')
            lines.append(f'scaling {row_name(r["config"])}: {r["world"]} vs 1: {later:.2f}x '
                         f'first pass, later half')
    head = results[0]
    lines.append('set-up: seconds from the run\'s start to its first iteration (hooks\' work '
                 'ahead, the loader\'s start); s/iter: the mean of the whole pass; later: of '
                 'its later half; peak GiB: allocated (+ graph pools\' free memory); reserved: '
                 'what the allocator held')
    if test:
        lines.append('test loop (tools/test.py\'s work), run twice over the same images: '
                     'forward = test_step + evaluator.process; the first pass meets each '
                     'image size for the first time')
    if head.get('phase_sync'):
        lines.append('GPU synchronised at every phase boundary (--phase-sync)')
    elif head.get('pass_sync'):
        lines.append(f'GPU synchronised at the end of each pass only (--pass-sync): data / '
                     f'{work} / step and "later" are host times, s/iter the pass total')
    else:
        lines.append(f'GPU synchronised once per iteration, at its end: data / {work} / '
                     f'step are host times, s/iter the total')
    wrappers = '' if test else '; optim wrappers: ' + ', '.join(
        f'{r["optim_wrapper"]}' for r in results)
    per = 'process' if head['device'] == 'CPU' else 'GPU'
    lines.append(f'{head["device"]}; {head["batch"]} images per {per}, {head["workers"]} loader '
                 f'workers, generated data of nominal size {head["size"][0]}x'
                 f'{head["size"][1]}{wrappers}')
    return '\n'.join(lines)


def compare(args, tool: str) -> List[dict]:
    """Every model of ``args`` (CONFIG, each --vs) at each GPU count, one process each
    (``tool``: see :func:`run_in_subprocess`)."""
    os.makedirs(args.work_dir, exist_ok=True)
    configs = [args.config] + list(args.vs or [])
    for config in configs:  # fail fast on a bad name, before any long run
        load_any_config(config)
    if args.data_root is None:  # generate once, shared by every model
        cfg = load_any_config(configs[0], args.cfg_options)
        args.batch = args.batch or batch_size(cfg, loader_key(args))
        _, _, args.data_root = benchmark_data(args, cfg,
                                              args.iters * args.batch * max(args.gpus))
    results = []
    for config in configs:
        for gpus in args.gpus:
            results.append(run_in_subprocess(args, config, gpus, tool))
    return results
