#!/usr/bin/env python
"""Speed and peak memory of BiFormer: classifier, dense trunk, and the BRA op alone.

    python tools/benchmark.py cls --arch small --batch 128 --amp bf16  # img/s
    python tools/benchmark.py trunk --arch small --shape 2 800 1216 --n-win 16
    python tools/benchmark.py bra  # the BRA op, per size
    python tools/benchmark.py step --ddp  # the cls config's step, eager / captured, DDP
    python tools/benchmark.py loader configs/cls/biformer_s_in1k.py --workers 1 8  # input
    python tools/benchmark.py kernels --json k.json  # our kernels against their floors
    python tools/benchmark.py kernels --sweep  # their launch settings
    # whole configs' training loops, then their evaluation:
    python tools/benchmark.py pipeline configs/det/maskrcnn_biformer_s.py --amp \
        --vs mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py
    python tools/benchmark.py pipeline --test configs/det/maskrcnn_biformer_s.py \
        --vs mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py

``pipeline`` runs whole configs' training loops on generated data and splits each
iteration into data, forward+backward and optimizer step, for the first pass (new input
sizes) and the steady state (``mmbiformer/benchmarking/pipeline.py``; ``pipeline -h``).

``--impl`` picks the BRA backend (``auto``/``triton``/``sdpa``/``reference``) or
``official``: the same model built from a checkout of github.com/rayleizhu/BiFormer given
by ``--official-root`` (it needs timm and einops), for side-by-side figures.
``--compile`` wraps the model in ``torch.compile``. ``--timm NAME`` times a timm model
instead (a reference point: ``swin_tiny_patch4_window7_224`` has BiFormer-S's FLOPs).
``--profile`` adds a table of the CUDA kernels of a few steps, most time first.

Timings use CUDA events on a GPU (wall clock on CPU), after warm-up iterations;
memory is ``torch.cuda.max_memory_allocated`` for the measured step.
"""
import argparse
import contextlib
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F

from mmbiformer.benchmarking.timing import mean_ms
from mmbiformer.engine.backbone_runtime import BackboneRuntime
from mmbiformer.engine.half_weights import half_weights_for, swapped_in
from mmbiformer.engine.shape_graphs import graph_pool_spare
from mmbiformer.models import BiFormer
from mmbiformer.ops import BiLevelRoutingAttention
from mmbiformer.ops.backends import ATTN_IMPLS, BACKENDS
from mmbiformer.ops.backends.triton import unavailable_reason
from mmbiformer.ops.dwconv import IMPLS as DWCONV_IMPLS
from mmbiformer.ops.dwconv import set_impl as set_dwconv_impl
from mmbiformer.ops.policy import captured_step, current_policy

DTYPES = {'none': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
# (name, N, H, W, C, n_win, topk, heads): classification stage 1, segmentation
# (512 crop) and detection (800x1216) stage-1 maps.
BRA_SIZES = [('cls 224', 128, 56, 56, 64, 7, 1, 2), ('seg 512', 8, 128, 128, 64, 8, 1, 2),
             ('det 800x1216', 2, 208, 304, 64, 16, 1, 2)]


def timed(step, iters: int, warmup: int, device, reset_peak: bool = True,
          others_spare: int = 0) -> tuple:
    """(ms per step, peak GiB) of ``step()``; without ``reset_peak`` the peak counts
    from the caller's last reset (a captured graph allocates its memory at capture).
    ``others_spare``: bytes of graph pools that ``step`` does not replay (another
    mode's graph, still held), left out of its peak."""
    for _ in range(warmup):
        step()
    if device.type != 'cuda':
        return mean_ms(step, iters, 0, device), float('nan')
    torch.cuda.synchronize()
    if reset_peak:
        torch.cuda.reset_peak_memory_stats()
    ms = mean_ms(step, iters, 0, device)
    # After a reset, graphs captured earlier hold their activations as spare memory.
    spare = graph_pool_spare() - others_spare if reset_peak else 0
    return ms, (torch.cuda.max_memory_allocated() + spare) / 2**30


def official_module(args, name: str):
    """Import ``models.biformer`` or ``ops.bra_legacy`` from an official checkout."""
    if not args.official_root:
        sys.exit('--impl official needs --official-root PATH (a checkout of '
                 'github.com/rayleizhu/BiFormer)')
    import importlib
    import types
    try:
        import fairscale  # noqa: F401
    except ImportError:  # only used for activation checkpointing, which we leave off
        stub = types.ModuleType('fairscale.nn.checkpoint')
        stub.checkpoint_wrapper = lambda m: m
        for mod in ('fairscale', 'fairscale.nn', 'fairscale.nn.checkpoint'):
            sys.modules.setdefault(mod, stub)
    _import_packages_from(osp.abspath(args.official_root), ('models', 'ops'))
    return importlib.import_module(name)


def _import_packages_from(root: str, names) -> None:
    """Import the top-level packages ``names`` of the folder ``root`` (with or without
    ``__init__.py``) under those names, without putting ``root`` on ``sys.path``: the
    official checkout's ``models`` and ``ops`` would shadow same-named packages for
    everything imported later. All are registered before any runs, so that they may
    import one another."""
    import importlib.machinery
    import importlib.util
    pending = []
    for name in names:
        if name in sys.modules:
            continue
        path = osp.join(root, name)
        init = osp.join(path, '__init__.py')
        if osp.isfile(init):
            spec = importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[path])
        else:  # a namespace package
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [path]
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        pending.append((spec, module))
    for spec, module in pending:
        if spec.loader is not None:
            spec.loader.exec_module(module)


def bra_cfg(args) -> dict:
    return dict(sdpa_recompute_kv=False) if args.no_recompute else {}


def attn_types(args):
    """``--attn TYPE``: that token mixer in stages 1-3, as the ablation configs."""
    return None if args.attn == 'bra' else (args.attn, ) * 3 + ('global', )


def official_preset(zoo, arch: str, **overrides):
    """``zoo.biformer_<arch>()`` with some of its fixed constructor arguments replaced
    (the official presets fix ``n_win=7`` and take no ``n_win`` of their own)."""
    real = zoo.BiFormer

    def build(**kwargs):
        return real(**{**kwargs, **overrides})
    zoo.BiFormer = build
    try:
        return getattr(zoo, f'biformer_{arch}')()
    finally:
        zoo.BiFormer = real


class Classifier(torch.nn.Module):
    """Backbone + global average pooling + linear head (official head layout)."""

    def __init__(self, args):
        super().__init__()
        self.backbone = BiFormer(args.arch, n_win=args.n_win or 7, out_indices=(3, ),
                                 out_norm='batchnorm', attn_impl=args.impl,
                                 attn_types=attn_types(args),
                                 bra_cfg=bra_cfg(args),
                                 dwconv_impl=args.dwconv_impl or 'cudnn',
                                 with_cp=args.with_cp or False,
                                 mlp_recompute=args.mlp_recompute)
        if args.compile:
            BackboneRuntime(compile=True).attach(self.backbone)
        self.head = torch.nn.Linear(self.backbone.embed_dims[-1], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].flatten(2).mean(-1))


class OfficialTrunk(torch.nn.Module):
    """The official model's stem and stages, returning the four stage outputs."""

    def __init__(self, official):
        super().__init__()
        self.official = official

    def forward(self, x):
        outs = []
        for down, stage in zip(self.official.downsample_layers, self.official.stages):
            x = stage(down(x))
            outs.append(x)
        return outs


def mmdet_swin_t():
    """mmdet's Swin-T backbone as ``mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py`` builds it."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    return MODELS.build(dict(
        type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4, qkv_bias=True,
        qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2,
        patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False, convert_weights=True))


def build(args, what: str, device):
    """The model to time, after ``--impl``, ``--channels-last`` and ``--compile``."""
    if args.mmdet_swin:
        model = mmdet_swin_t()
    elif args.timm:
        import timm
        model = timm.create_model(args.timm, num_classes=1000)
    elif args.impl == 'official':
        zoo = official_module(args, 'models.biformer')
        n_win = args.n_win or (7 if what == 'cls' else 16)
        model = official_preset(zoo, args.arch, n_win=n_win, auto_pad=what != 'cls')
        model = model if what == 'cls' else OfficialTrunk(model)
    elif what == 'cls':
        model = Classifier(args)
    else:
        model = BiFormer(args.arch, n_win=args.n_win or 16, attn_impl=args.impl,
                         bra_cfg=bra_cfg(args), attn_types=attn_types(args),
                         dwconv_impl=args.dwconv_impl or 'native',
                         with_cp=args.with_cp or False,
                         mlp_recompute=args.mlp_recompute)
        # --memory runs the graph's kernels eagerly (its policy).
        graphs = args.cuda_graph and device.type == 'cuda' and not args.memory
        BackboneRuntime(compile=args.compile, cuda_graph=graphs).attach(model)
    model = model.to(device)
    if args.strided_impl:
        from mmbiformer.ops.dwconv import GemmConv2d
        for m in model.modules():
            if isinstance(m, GemmConv2d):
                m.impl = args.strided_impl
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Ours compiles its backbone only, through its runtime (above).
    foreign = args.timm or args.impl == 'official' or args.mmdet_swin
    return torch.compile(model) if args.compile and foreign else model


def bench_cls(args, device):
    model = build(args, 'cls', device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch, ), device=device)
    # A captured step as the training loop captures it (engine/captured_train_step.py):
    # the fused AdamW with its state on the GPU, and gradients the graph allocates
    # (set to None before each step: written by the backward, not added into zeros,
    # which is a launch per parameter).
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=args.cuda_graph,
                            fused=True if args.cuda_graph else None)
    dtype = DTYPES[args.amp]

    def logits():
        # No autocast weight cache: a captured graph must recompute the casts.
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None,
                            cache_enabled=not args.cuda_graph):
            return model(x)

    half = None  # the captured step's one cast of the weights each way, as the loop's

    def train_step():
        opt.zero_grad(set_to_none=True)
        with swapped_in(half, model):
            F.cross_entropy(logits().float(), y).backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            logits()

    if args.memory:
        memory_breakdown(args, model, opt, lambda: F.cross_entropy(logits().float(), y),
                         device)
        return
    # --cuda-graph captures each mode's step in its own graph, in that mode, and
    # counts a mode's memory from its own capture (the graph's memory is allocated
    # then): the other mode's graph, still held, is not in its figure.
    rows = []
    if args.mode in ('train', 'both'):
        model.train()
        if args.cuda_graph:
            if current_policy().half_weight_copies:
                with captured_step():
                    half = half_weights_for(model, logits, dtype)
            torch.cuda.reset_peak_memory_stats()
            train_step = captured(train_step)
        ms, mem = timed(train_step, args.iters, args.warmup, device,
                        reset_peak=not args.cuda_graph)
        rows.append(('train', ms, args.batch * 1000 / ms, mem))
        profile(args, train_step)
    if args.mode in ('infer', 'both'):
        model.eval()
        others = graph_pool_spare() if device.type == 'cuda' else 0
        if args.cuda_graph:
            torch.cuda.reset_peak_memory_stats()
            infer_step = captured(infer_step)
        ms, mem = timed(infer_step, args.iters, args.warmup, device,
                        reset_peak=not args.cuda_graph, others_spare=others)
        rows.append(('infer', ms, args.batch * 1000 / ms, mem))
    name = args.timm or f'BiFormer-{args.arch}'
    if not args.timm and args.attn != 'bra':
        name += f' ({args.attn} attention in stages 1-3)'
    print(f'{name} classifier, batch {args.batch}, {args.size}x{args.size}, '
          f'amp {args.amp}, {describe(args)}, {device_name(device)}')
    print(f'{"mode":<6} {"ms/step":>9} {"img/s":>9} {"peak GiB":>9}')
    for mode, ms, ips, mem in rows:
        print(f'{mode:<6} {ms:9.1f} {ips:9.1f} {mem:9.2f}')


def bench_step(args, device):
    """The classification config's training step as ``tools/train.py`` runs it (its
    model, optimizer and Mixup/CutMix; ``--amp``): mmengine's eager step against
    :class:`CapturedTrainStep`. ``--ddp`` wraps the model in mmengine's DDP, as
    ``tools/dist_train.sh`` does (under torchrun: every process; alone: a 1-process
    NCCL group, which times the two graphs and the all-reduce call without traffic)."""
    import os

    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample

    from mmbiformer.engine import CapturedTrainStep
    from mmbiformer.utils.launch import build_model as build_config_model
    from mmbiformer.utils.launch import load_config
    if device.type != 'cuda':
        sys.exit('benchmark.py step: needs a GPU')
    if args.ddp:
        if 'RANK' not in os.environ:
            from mmbiformer.utils.distributed import free_port
            os.environ.update(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                              MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
        device = torch.device('cuda', int(os.environ['LOCAL_RANK']))
        torch.cuda.set_device(device)
        dist.init_process_group('nccl')
    cfg = load_config(args.config)
    wrapper_cfg = cfg.optim_wrapper
    if args.amp != 'none':
        wrapper_cfg.update(type='AmpOptimWrapper', loss_scale='dynamic',
                           dtype='bfloat16' if args.amp == 'bf16' else 'float16')
    rank = dist.get_rank() if args.ddp else 0
    world = dist.get_world_size() if args.ddp else 1
    g = torch.Generator().manual_seed(rank)
    inputs = torch.randint(0, 256, (args.batch, 3, args.size, args.size), generator=g,
                           dtype=torch.uint8).to(device)
    samples = [DataSample().set_gt_label(int(i))
               for i in torch.randint(0, 1000, (args.batch, ), generator=g)]
    rows = []
    for name in ['eager', 'captured'] + (['eager DDP', 'captured DDP'] if args.ddp else []):
        torch.manual_seed(0)
        model = build_config_model(cfg).train().to(device)
        wrapper = build_optim_wrapper(model, wrapper_cfg)
        if 'DDP' in name:
            model = MMDistributedDataParallel(module=model, device_ids=[device.index])
        if name.startswith('captured'):
            step = CapturedTrainStep(model, wrapper, warmup_iters=3)
        else:
            step = model.train_step
        ms, mem = timed(lambda: step(dict(inputs=inputs, data_samples=samples),
                                     optim_wrapper=wrapper),
                        args.iters, max(args.warmup, 5), device)
        rows.append((name, ms, args.batch * 1000 / ms, mem))
        del step, model, wrapper
        torch.cuda.empty_cache()
    if rank == 0:
        print(f'{args.config} training step, batch {args.batch} per GPU, {args.size}x'
              f'{args.size}, amp {args.amp}, {world} process(es), {device_name(device)}')
        print(f'{"step":<14} {"ms/step":>9} {"img/s/GPU":>10} {"peak GiB":>9}')
        for mode, ms, ips, mem in rows:
            print(f'{mode:<14} {ms:9.1f} {ips:10.1f} {mem:9.2f}')
    if args.ddp:
        dist.destroy_process_group()


def memory_breakdown(args, model, optimizer, loss_fn, device) -> None:
    """``--memory``: where one training step's memory goes (benchmarking/memory.py),
    with the captured step's kernels under ``--cuda-graph``."""
    from mmbiformer.benchmarking.memory import breakdown, format_breakdown
    if device.type != 'cuda':
        sys.exit('error: --memory measures CUDA memory: it needs a GPU')
    model.train()
    with captured_step() if args.cuda_graph else contextlib.nullcontext():
        result = breakdown(model.parameters(), optimizer, loss_fn, device)
    print(f'{args.timm or f"BiFormer-{args.arch}"} {args.what} training step, amp '
          f'{args.amp}, {describe(args)}, {device_name(device)}')
    print(format_breakdown(result))


def captured(step):
    """``step`` (forward, backward and optimizer step on fixed tensors) captured once in
    a CUDA graph; the returned function replays it (no host work per kernel)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with captured_step():  # kernels chosen for GPU time: no host cost once captured
        with torch.cuda.stream(side):  # warm-up outside the graph: compiles, allocations
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
    return graph.replay


def bench_trunk(args, device):
    n, h, w = args.shape
    model = build(args, 'trunk', device)
    model.train()  # mmdet's Swin returns None from train()
    x = torch.randn(n, 3, h, w, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = DTYPES[args.amp]

    def step_at(inputs):
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outs = model(inputs)
        sum(o.float().mean() for o in outs).backward()

    def step():
        step_at(x)

    if args.memory:
        def loss():
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                return sum(o.float().mean() for o in model(x))
        memory_breakdown(args, model, torch.optim.SGD(model.parameters(), lr=0.), loss,
                         device)
        return
    ms, mem = timed(step, args.iters, args.warmup, device)
    profile(args, step)
    name = ('mmdet Swin-T' if args.mmdet_swin else
            f'BiFormer-{args.arch} (n_win {args.n_win or 16})')
    print(f'{name} trunk fwd+bwd {n}x3x{h}x{w}, amp {args.amp}, {describe(args)}, '
          f'{device_name(device)}: {ms:.1f} ms, {mem:.2f} GiB')
    if args.new_sizes:
        new_size_cost(args, model, step_at, (n, h, w), device)


def new_size_cost(args, model, step_at, shape, device) -> None:
    """Trunk fwd+bwd at ``--new-sizes K`` input sizes never seen before (padded-COCO-like:
    multiples of 32 around the given size), then at the same sizes again: what a new
    size costs. cuDNN keeps its default settings (benchmark off, as the dense configs)."""
    n, h, w = shape
    sizes = [(h - 32 * (i % 5), w - 32 * (i // 5) - 32) for i in range(args.new_sizes)]
    times = {}
    for phase in ('new', 'seen'):
        ms = []
        for hh, ww in sizes:
            x = torch.randn(n, 3, hh, ww, device=device)
            t0 = time.perf_counter()
            step_at(x)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            ms.append((time.perf_counter() - t0) * 1000)
        times[phase] = ms
    extra = sorted(a - b for a, b in zip(times['new'], times['seen']))
    print(f'new input sizes ({len(sizes)} sizes from {sizes[0][0]}x{sizes[0][1]} down): '
          f'fwd+bwd {sum(times["new"]) / len(sizes):.1f} ms at a new size, '
          f'{sum(times["seen"]) / len(sizes):.1f} ms at the same size again; extra per '
          f'new size: median {extra[len(extra) // 2]:.1f} ms, max {extra[-1]:.1f} ms')


def bench_bra(args, device):
    dtype = DTYPES[args.amp]
    impls = list(BACKENDS) + (['official'] if args.official_root else [])
    print(f'BRA fwd+bwd, amp {args.amp}, {device_name(device)}')
    print(f'{"size":<14} {"shape":<20} {"n_win":>5} {"topk":>4} {"impl":<10} '
          f'{"ms":>8} {"peak GiB":>9}')
    for name, n, h, w, c, n_win, topk, heads in BRA_SIZES:
        if device.type == 'cpu':
            n = 1
        x = torch.randn(n, h, w, c, device=device, requires_grad=True)
        for impl in impls:
            cannot = impl == 'triton' and unavailable_reason(device)
            if cannot:
                print(f'{name:<14} {"":<20} {"":>5} {"":>4} {impl:<10} skipped: {cannot}')
                continue
            if impl == 'official':
                op = official_module(args, 'ops.bra_legacy').BiLevelRoutingAttention(
                    c, heads, n_win=n_win, topk=topk, side_dwconv=5, auto_pad=True)
            else:
                op = BiLevelRoutingAttention(c, heads, n_win=n_win, topk=topk, side_dwconv=5,
                                             auto_pad=True, attn_impl=impl, **bra_cfg(args))
                set_dwconv_impl(op, args.dwconv_impl or 'native')
            op = op.to(device)

            def step():
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    out = op(x)
                out.float().sum().backward()

            if device.type == 'cuda':
                torch.cuda.empty_cache()
            ms, mem = timed(step, args.iters, args.warmup, device)
            print(f'{name:<14} {f"{n}x{h}x{w}x{c}":<20} {n_win:>5} {topk:>4} {impl:<10} '
                  f'{ms:8.2f} {mem:9.2f}')
            del op
        del x


def profile(args, step, steps: int = 3) -> None:
    """With ``--profile``: the kernels of ``steps`` calls of ``step``, most time first."""
    if not args.profile:
        return
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    key = 'self_cuda_time_total' if torch.cuda.is_available() else 'self_cpu_time_total'
    print(prof.key_averages().table(sort_by=key, row_limit=args.profile, max_name_column_width=60))


def describe(args) -> str:
    extras = [x for x, on in (('dwconv ' + str(args.dwconv_impl or 'default'),
                               not (args.timm or args.mmdet_swin)),
                              (f'strided {args.strided_impl}', args.strided_impl),
                              ('channels-last', args.channels_last),
                              ('compile', args.compile),
                              ('cuda-graph', args.cuda_graph),
                              ('no-recompute', args.no_recompute),
                              (f'mlp-recompute {args.mlp_recompute}', args.mlp_recompute),
                              (f'with-cp {args.with_cp}', args.with_cp)) if on]
    if args.timm or args.mmdet_swin:
        return ' '.join(['timm' if args.timm else 'mmdet'] + extras)
    return ' '.join([f'impl {args.impl}'] + extras)


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'


def pipeline_arguments(parser) -> None:
    """The arguments of ``benchmark.py pipeline`` (``mmbiformer/benchmarking/pipeline.py``)."""
    from mmbiformer.utils.cfg_options import ConfigOptions
    parser.add_argument('config', help='config file, or a toolbox config such as '
                        'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')
    parser.add_argument('--vs', nargs='+', metavar='CONFIG',
                        help='more configs (paths or mm*:: names) to time in the same run')
    parser.add_argument('--iters', type=int,
                        help='iterations per pass (the generated data has iters x batch '
                        'x GPUs training images; default 40, with --fits 3)')
    parser.add_argument('--data-root', help='use this data (in the layout of the '
                        "config's dataset) instead of generating it")
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='nominal size of the generated images (default: as the real '
                        'data at the configs\' scale)')
    parser.add_argument('--batch', type=int, help="images per GPU (default: the first "
                        "config's)")
    parser.add_argument('--workers', type=int, help="loader workers (default: the config's)")
    parser.add_argument('--amp', action='store_true',
                        help="mixed precision for every model, as tools/train.py --amp")
    parser.add_argument('--gpus', type=int, nargs='+', default=[1],
                        help='GPU counts to run each model at (torchrun), e.g. 1 2')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_pipeline')
    parser.add_argument('--out', help='also write the results as JSON here')
    parser.add_argument('--phase-sync', action='store_true', help='synchronise with the GPU '
                        'at every phase boundary (data / fwd+bwd / step), not only at each '
                        "iteration's end: exact parts, no host-GPU overlap across them")
    parser.add_argument('--pass-sync', action='store_true', help='training: synchronise '
                        'with the GPU only at the end of each pass, as training with '
                        'AsyncRuntimeInfoHook waits for it nowhere (the host prepares the '
                        'next batch while the GPU runs the step); per-iteration parts are '
                        "then the host's")
    parser.add_argument('--profile', type=int, metavar='N', help='profile N iterations in '
                        'the middle of the steady pass: WORK_DIR/profile_CONFIG.txt lists '
                        'operators by host time and kernels by GPU time')
    parser.add_argument('--test', action='store_true',
                        help="time evaluation instead of training: the config's test loop "
                        "(as tools/test.py runs it) twice over --iters generated validation "
                        "images of varied sizes, s/img of the first and the second pass")
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions,
                        help='overrides for every model')
    parser.add_argument('--cuda-graph', action='store_true',
                        help="--test: our models' backbones replay inference as CUDA "
                        "graphs, as tools/test.py --cuda-graph")
    parser.add_argument('--fits', type=float, nargs='+', metavar='GIB',
                        help='instead of timing: the most images per GPU that train on a '
                        'card of each of these sizes, e.g. 12 16 24 80 (this GPU capped; '
                        'mmbiformer/benchmarking/fits.py)')
    parser.add_argument('--limit', type=int, default=32,
                        help='--fits: try at most this many images per GPU')
    parser.add_argument('--single', metavar='JSON', help='(internal) time CONFIG in this '
                        'process and write the result here')
    parser.add_argument('--memory-cap', type=float, metavar='GIB', help='(internal) --fits: '
                        'cap this process to a card of GIB')


def pipeline_main(argv) -> None:
    import json
    import os
    from mmbiformer.benchmarking import pipeline
    from mmbiformer.errors import UserError
    parser = argparse.ArgumentParser(prog='benchmark.py pipeline', description=pipeline.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(parser)
    args = parser.parse_args(argv)
    if args.iters is None:
        args.iters = 3 if args.fits else 40
    try:
        if args.single:  # one model in this process (started by compare, below)
            from mmbiformer.utils.distributed import distributed_run
            with distributed_run():  # several processes: their group ended cleanly
                result = pipeline.run_single(args)
            if int(os.environ.get('RANK', 0)) == 0:
                with open(args.single, 'w') as f:
                    json.dump(result, f)
            return
        if args.fits:
            from mmbiformer.benchmarking import fits
            results = fits.run(args, tool=osp.abspath(__file__))
            print(fits.format_table(results, args.limit))
        else:
            results = pipeline.compare(args, tool=osp.abspath(__file__))
            print(pipeline.table(results))
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(results, f, indent=1)
    except UserError as e:
        sys.exit(f'error: {e}')


def loader_main(argv) -> None:
    import json

    from mmbiformer.benchmarking import loader
    from mmbiformer.errors import UserError
    parser = argparse.ArgumentParser(prog='benchmark.py loader', description=loader.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    loader.arguments(parser)
    args = parser.parse_args(argv)
    try:
        loader.workers_list(args.workers)
        result = loader.run(args)
    except UserError as e:
        sys.exit(f'error: {e}')
    print(loader.table(result))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)


def kernels_main(argv) -> None:
    import json

    from mmbiformer.benchmarking import attention_sweep, kernels
    parser = argparse.ArgumentParser(prog='benchmark.py kernels', description=kernels.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workload', nargs='+', choices=sorted(kernels.WORKLOADS),
                        default=['cls', 'det'])
    parser.add_argument('--parts', nargs='+', choices=kernels.PARTS, default=kernels.PARTS)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--json', metavar='PATH', help='also write the rows as JSON')
    parser.add_argument('--attention-kernels', nargs='+',
                        choices=sorted(attention_sweep.ROUTED) + sorted(attention_sweep.DENSE),
                        help='--sweep: also vary these attention kernels\' settings '
                        '(mmbiformer/benchmarking/attention_sweep.py)')
    parser.add_argument('--sweep', action='store_true',
                        help="time the candidate launch settings of the depthwise convs, "
                        "add + LayerNorm and the MLP (of --parts; the attention kernels' "
                        "with --attention-kernels) instead (ms per step per stage, "
                        "fastest first)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('error: benchmark.py kernels times CUDA kernels: it needs a GPU')
    if args.sweep:
        result = {}
        if 'dwconv' in args.parts:
            result.update(kernels.sweep_dwconv(args.workload, args.iters))
        if 'layer_norm' in args.parts:
            result.update(kernels.sweep_layer_norm(args.workload, args.iters))
        if 'mlp' in args.parts:
            result.update(kernels.sweep_mlp(args.workload, args.iters))
        print(kernels.format_sweep(result))
        if args.attention_kernels:  # its own rows: (shape, setting, us, error) each
            result['attention'] = attention_sweep.sweep_attention(args.attention_kernels)
    else:
        result = kernels.roofline(args.workload, args.iters, args.parts)
        print(kernels.format_table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


def set_policy(parser, items) -> None:
    """``--policy SWITCH=VALUE ...``: ints, or true / false."""
    from mmbiformer.ops.policy import set_runtime_policy
    changes = {}
    for item in items:
        name, sep, value = item.partition('=')
        low = value.strip().lower()
        if not sep or not low:
            parser.error(f'--policy takes SWITCH=VALUE, got {item!r}')
        changes[name.strip()] = (low == 'true' if low in ('true', 'false')
                                 else int(low) if low.lstrip('-').isdigit() else value)
    try:
        set_runtime_policy(**changes)
    except ValueError as e:
        parser.error(f'--policy: {e}')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['pipeline']:
        return pipeline_main(argv[1:])
    if argv[:1] == ['loader']:
        return loader_main(argv[1:])
    if argv[:1] == ['kernels']:
        return kernels_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=['cls', 'trunk', 'bra', 'step', 'pipeline', 'loader',
                                         'kernels'])
    parser.add_argument('--config', default='configs/cls/biformer_s_in1k.py',
                        help='step: the classification config whose training step is timed')
    parser.add_argument('--ddp', action='store_true',
                        help="step: also time it on the model wrapped in mmengine's DDP "
                        "(run under torchrun for several GPUs)")
    parser.add_argument('--arch', default='small', choices=['tiny', 'small', 'base'])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--shape', type=int, nargs=3, default=(2, 800, 1216),
                        metavar=('N', 'H', 'W'))
    parser.add_argument('--n-win', type=int, default=None)
    parser.add_argument('--amp', choices=sorted(DTYPES), default='bf16')
    parser.add_argument('--mode', choices=['train', 'infer', 'both'], default='both')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--impl', choices=list(ATTN_IMPLS) + ['official'],
                        default='auto')
    parser.add_argument('--official-root', metavar='PATH',
                        help='checkout of github.com/rayleizhu/BiFormer, for --impl official '
                        '(and an extra row in the bra table)')
    parser.add_argument('--dwconv-impl', choices=DWCONV_IMPLS,
                        help="convs of ours (default: as the configs, 'cudnn' for cls, "
                        "'native' for trunk and bra)")
    parser.add_argument('--strided-impl', choices=DWCONV_IMPLS,
                        help='stem and down-sampling convs only (default: as --dwconv-impl)')
    parser.add_argument('--attn', default='bra', choices=['bra', 'quadtree', 'shunted', 'window'],
                        help='token mixer of stages 1-3 (configs/cls/ablation/)')
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--memory', action='store_true',
                        help='cls, trunk: break one training step\'s memory down '
                        '(parameters, optimizer state, gradients, what the forward keeps, '
                        'by op) instead of timing it')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='cls: capture the training step (forward, backward, AdamW) '
                        'and the inference step, each in a CUDA graph of its own, and time '
                        'their replays; trunk: BackboneRuntime(cuda_graph=True) attached '
                        'to the backbone, forward and backward replayed per input size (memory '
                        'includes the graphs\' pool)')
    parser.add_argument('--timm', metavar='NAME', help='time this timm model instead')
    parser.add_argument('--mmdet-swin', action='store_true',
                        help="trunk: time mmdet's Swin-T backbone instead (as the Mask "
                        "R-CNN Swin-T config builds it)")
    parser.add_argument('--profile', type=int, nargs='?', const=30, default=0, metavar='ROWS',
                        help='print the top ROWS kernels (default 30) of 3 profiled steps')
    parser.add_argument('--no-recompute', action='store_true',
                        help='sdpa backend: keep gathered K/V for backward instead of '
                        'gathering again')
    parser.add_argument('--mlp-recompute', choices=['gelu', 'mlp'],
                        help="ours: BiFormer(mlp_recompute=...), the MLP's backward "
                        "recomputes GELU / the first layer and GELU (less memory)")
    parser.add_argument('--with-cp', type=int, nargs='+', metavar='STAGE',
                        help='ours: BiFormer(with_cp=[STAGE...]), those stages\' blocks '
                        'recompute their forward in the backward (less memory)')
    parser.add_argument('--new-sizes', type=int, default=0, metavar='K',
                        help='trunk: also time fwd+bwd at K input sizes never seen, then '
                        'at the same sizes again (the cost of a new size)')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--policy', nargs='+', default=[], metavar='SWITCH=VALUE',
                        help='switches of the ops\' runtime policy (mmbiformer/ops/policy.py)'
                        ', e.g. linear_bias_grad_mv=false')
    args = parser.parse_args(argv)
    set_policy(parser, args.policy)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if args.cuda_graph and device.type != 'cuda' and args.what == 'cls':
        parser.error('--cuda-graph captures CUDA graphs: it needs a GPU')
    {'cls': bench_cls, 'trunk': bench_trunk, 'bra': bench_bra,
     'step': bench_step}[args.what](args, device)


if __name__ == '__main__':
    main()
