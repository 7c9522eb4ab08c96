"""Compile a config's Triton kernels ahead of time, into Triton's cache on this machine.

Triton compiles a kernel the first time it meets a new set of specialisations (tile
sizes from the regions' token counts, sizes equal to 1 or divisible by 16, dtypes) and
keeps the result in its on-disk cache (``~/.triton/cache``, or ``TRITON_CACHE_DIR``).
On a machine that has never run the model, the first iterations of training or testing
wait for those compiles (seconds each). Running the backbone here over the input sizes
the config's pipelines produce, in the modes training and testing use, compiles them
once, before any job starts (``tools/compile_kernels.py``).
"""
import time
from typing import Iterable, List, Optional, Tuple

import torch

from .backbone_runtime import network_forward, runtime_of
from .backbone_runtime_hook import configured_runtime

# Width / height ratios of the images swept (COCO's and ADE20K's range, both ways).
ASPECTS = tuple(0.5 * 4 ** (i / 15) for i in range(16))
# Fine enough that every padded size of that range comes out (graphs captured ahead
# need them all; compiling kernels needs a sample).
EVERY_ASPECT = tuple(0.5 * 4 ** (i / 2999) for i in range(3000))


def _pad(n: int, divisor: int) -> int:
    return -(-n // divisor) * divisor


def keep_ratio_sizes(scale: Tuple[int, int], divisor: int,
                     aspects: Iterable[float] = ASPECTS) -> List[Tuple[int, int]]:
    """(H, W) of images of the given aspect ratios after mmcv's keep-ratio ``Resize`` to
    ``scale`` (long, short edge bounds) and padding to multiples of ``divisor``."""
    long_edge, short_edge = max(scale), min(scale)
    sizes = set()
    for aspect in aspects:
        h, w = 1000.0, 1000.0 * aspect
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
        sizes.add((_pad(int(h * factor + 0.5), divisor), _pad(int(w * factor + 0.5), divisor)))
    return sorted(sizes)


def _resize_scale(pipeline) -> Optional[Tuple[int, int]]:
    for t in pipeline or []:
        if t.get('type') in ('Resize', 'RandomResize') and t.get('keep_ratio'):
            scale = t.get('scale')
            if isinstance(scale, (tuple, list)) and len(scale) == 2 and all(
                    isinstance(s, int) for s in scale):
                return tuple(scale)
    return None


def _crop_size(pipeline) -> Optional[Tuple[int, int]]:
    for t in pipeline or []:
        if t.get('type') in ('RandomCrop', 'RandomResizedCrop', 'CenterCrop'):
            size = t.get('crop_size', t.get('scale'))
            if isinstance(size, int):
                return size, size
            if isinstance(size, (tuple, list)) and len(size) == 2:
                return tuple(size)
    return None


def _nested(cfg, *keys):
    """``cfg[k1][k2]...``, or None where a level is missing or None (a test-only run sets
    ``train_dataloader`` / ``optim_wrapper`` to None)."""
    for key in keys:
        cfg = cfg.get(key) if cfg else None
    return cfg


def plan(cfg, aspects: Iterable[float] = ASPECTS) -> dict:
    """The input sizes (H, W) to run for ``cfg``: ``test`` (forward, fp32, as
    ``tools/test.py``) and ``train`` (forward and backward with the kernels a captured
    step uses, in the training's autocast dtype), and that dtype."""
    test_pipe = _nested(cfg, 'test_dataloader', 'dataset', 'pipeline')
    train_pipe = _nested(cfg, 'train_dataloader', 'dataset', 'pipeline')
    graph = configured_runtime(cfg)['cuda_graph']
    divisor = (graph.get('size_divisor') if isinstance(graph, dict) else None) or 32
    crop = _crop_size(train_pipe)
    scale = _resize_scale(test_pipe)
    test = keep_ratio_sizes(scale, 32, aspects) if scale else ([crop] if crop else [])
    if crop and (_resize_scale(train_pipe) is None or 'Crop' in str(train_pipe)):
        train = [crop]
    else:
        train_scale = _resize_scale(train_pipe) or scale
        train = keep_ratio_sizes(train_scale, divisor, aspects) if train_scale else []
    # AmpOptimWrapper's dtype; fp16 (tools/train.py --amp) for configs that name none.
    dtype = {'bfloat16': torch.bfloat16}.get(
        str(_nested(cfg, 'optim_wrapper', 'dtype')), torch.float16)
    return dict(test=test, train=train, dtype=dtype)


def warm_up(backbone: torch.nn.Module, sizes: dict, log=print) -> float:
    """Run ``backbone`` (on a GPU) over ``sizes`` (:func:`plan`); seconds taken."""
    from ..ops.policy import captured_step
    device = next(backbone.parameters()).device
    start = time.perf_counter()
    backbone.eval()
    runtime = runtime_of(backbone)
    graphs = bool(runtime and runtime.cuda_graph and runtime.cuda_graph['inference_graphs'])
    network = network_forward(backbone)
    with torch.no_grad():
        for h, w in sizes['test']:
            x = torch.randn(1, 3, h, w, device=device)
            backbone(x)
            if graphs:  # an inference graph records the kernels a captured step takes
                with captured_step():
                    network(x)
    backbone.train()
    for h, w in sizes['train']:
        x = torch.randn(2, 3, h, w, device=device)
        # The backward inside too: recomputed blocks (mlp_recompute, with_cp) must
        # choose the kernels their forward chose.
        with captured_step():
            with torch.autocast('cuda', dtype=sizes['dtype']):
                outs = network(x)  # the body the graphs capture
            sum(o.float().mean() for o in outs).backward()
    backbone.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    log(f'{len(sizes["test"])} test and {len(sizes["train"])} training input sizes in '
        f'{seconds:.1f} s')
    return seconds
