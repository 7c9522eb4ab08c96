"""What fits which card: the most images per GPU each config trains with when the GPU
is capped to a smaller card's memory.

    python3 tools/benchmark.py pipeline configs/det/maskrcnn_biformer_s.py --amp \
        --vs mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py --fits 12 16 24 80

Each trial is the ``pipeline`` benchmark's training run (the config's Runner, hooks,
loader and optimizer, on generated data) for two passes of ``--iters`` iterations
(default 3 here) in a fresh process, its memory capped
(``torch.cuda.set_per_process_memory_fraction``) to a card of that many GiB less the
CUDA context the process holds (the context is outside PyTorch's allocator, and a
smaller card has one too). A trial fits where it
ends without running out of memory; any other failure stops the search with the
trial's log. The search assumes fewer images never need more memory: per card it
doubles the images from the last card's answer until a trial fails, then bisects.
"""
import argparse
import os
from typing import Callable, Dict, List

from ..errors import UserError
from .pipeline import (RunFailed, benchmark_data, load_any_config, row_name,
                       run_in_subprocess)

# How an allocation failure shows in a trial's log: PyTorch's allocator, and the
# libraries that allocate on their own (cuBLAS, cuDNN) or through a graph capture.
OUT_OF_MEMORY = ('CUDA out of memory', 'OutOfMemoryError', 'CUBLAS_STATUS_ALLOC_FAILED',
                 'CUDNN_STATUS_ALLOC_FAILED', 'CUDA error: out of memory')


def largest_batch(fits: Callable[[int], bool], known_good: int = 0, limit: int = 32) -> int:
    """The largest ``n`` in ``[1, limit]`` with ``fits(n)`` (0: not even one), where
    ``fits`` is monotone (fitting ``n`` images means fitting fewer) and ``known_good``
    images are known to fit: doubling from it, then bisecting."""
    good, bad = min(known_good, limit), None
    while good < limit and (bad is None or bad - good > 1):
        n = min(limit, max(1, 2 * good)) if bad is None else (good + bad) // 2
        if fits(n):
            good = n
        else:
            bad = n
    return good


def trial_ran_out_of_memory(log_text: str) -> bool:
    return any(sign in log_text for sign in OUT_OF_MEMORY)


def search(configs: List[str], cards: List[float], run: Callable[[str, int, float], bool],
           limit: int = 32, say: Callable[[str], None] = lambda line: None
           ) -> Dict[str, Dict[float, int]]:
    """``{config: {card GiB: largest images per GPU}}``: cards in increasing size, each
    starting from the smaller card's answer (what fits 12 GiB fits 16); each trial and
    answer ``say``-ed as it comes (a long search cut short keeps what it found)."""
    table = {}

    def trial(config, n, card):
        fitted = run(config, n, card)
        say(f'{row_name(config)}: {n} images on {card:g} GiB: '
            f'{"trains" if fitted else "out of memory"}')
        return fitted

    for config in configs:
        table[config], good = {}, 0
        for card in sorted(cards):
            good = largest_batch(lambda n: trial(config, n, card), good, limit)
            table[config][card] = good
    return table


def format_table(table: Dict[str, Dict[float, int]], limit: int) -> str:
    cards = sorted({c for row in table.values() for c in row})
    lines = [f'{"images per GPU that train (most)":<58}'
             + ''.join(f'{f"{c:g} GiB":>9}' for c in cards)]
    for config, row in table.items():
        lines.append(f'{row_name(config):<58}' + ''.join(
            f'{(f">={limit}" if row[c] >= limit else str(row[c])):>9}' for c in cards))
    lines.append('a card of N GiB: this GPU capped to N GiB less the CUDA context of the '
                 'process; 0: not one image')
    return '\n'.join(lines)


def run_trial(args, config: str, batch: int, card: float, tool: str) -> bool:
    """One ``pipeline`` training run of ``config`` at ``batch`` images per GPU under a
    ``card``-GiB cap (:func:`~.pipeline.run_in_subprocess`); whether it fitted."""
    trial = argparse.Namespace(**dict(vars(args), batch=batch, memory_cap=card))
    try:
        run_in_subprocess(trial, config, 1, tool)
    except RunFailed as e:
        with open(e.log) as f:
            if trial_ran_out_of_memory(f.read()):
                return False
        raise
    return True


def need_images(args) -> int:
    """Training images the largest trial reads: its iterations at ``--limit`` images."""
    return args.iters * args.limit


def run(args, tool: str) -> Dict[str, Dict[float, int]]:
    """``benchmark.py pipeline CONFIG [--vs ...] --fits GIB...``: the table of
    :func:`search`, every trial through ``tool`` (:func:`run_trial`)."""
    import torch
    if not torch.cuda.is_available():
        raise UserError('--fits caps a GPU\'s memory to each card\'s size: it needs a GPU')
    os.makedirs(args.work_dir, exist_ok=True)
    configs = [args.config] + list(args.vs or [])
    for config in configs:  # fail fast on a bad name, before any long run
        load_any_config(config)
    if args.data_root is None:  # made once, for the largest trial; each reads its share
        cfg = load_any_config(configs[0], args.cfg_options)
        _, _, args.data_root = benchmark_data(args, cfg, need_images(args))
    return search(configs, list(args.fits),
                  lambda config, n, card: run_trial(args, config, n, card, tool), args.limit,
                  say=lambda line: print(line, flush=True))
