#!/usr/bin/env python
"""Evaluate a checkpoint on the test split of any config of configs/{cls,det,seg}.

    python tools/test.py configs/seg/upernet_biformer_s.py work_dirs/.../iter_160000.pth
    tools/dist_test.sh configs/seg/upernet_biformer_s.py CKPT 8
"""
import argparse
import json
import math
import sys

import mmbiformer.openmmlab  # noqa: F401  (stack fixes before any toolbox import)
from mmbiformer.engine.backbone_runtime_hook import with_inference_graphs
from mmbiformer.errors import ArgumentError
from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.errors import UserError
from mmbiformer.weights.checkpoint_refs import checkpoint_file
from mmbiformer.utils.data_checks import check_data
from mmbiformer.utils.distributed import (
    dist_timeout, distributed_run, setup_cpu_distributed)
from mmbiformer.utils.launch import (
    add_hook, build_runner, log_memory_footprint, parse_tool_args, prepare_output,
    tool_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file or model-zoo name')
    parser.add_argument('--out', help='dump raw predictions to this pickle file')
    parser.add_argument('--allow-partial', action='store_true',
                        help='evaluate even if the checkpoint leaves model weights '
                        'unloaded or mis-shaped (refused otherwise)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_pipeline/tta_model")
    parser.add_argument('--cuda-graph', action='store_true',
                        help="replay the backbone's inference as CUDA graphs, one per input "
                        "size (up to 64; the detection configs do so already): less host "
                        "time per image, more GPU memory")
    return parse_tool_args(parser, argv)


# Test batches between log lines at least (mmengine's default; the bar runs between).
TEST_LOG_INTERVAL = 50


def main(argv=None):
    args = parse_args(argv)
    cfg = tool_config(args, loaders=('test_dataloader', ))
    cfg.load_from = checkpoint_file(args.checkpoint)
    if args.tta or cfg.get('tta', False):
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise UserError(f'{args.config} defines no tta_model / tta_pipeline')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out:
        # Checked now: DumpResults writes only after the whole test epoch.
        prepare_output(args.out)
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UserError(f'--out {args.out}: the predictions are dumped as a pickle; '
                            f'give a file name ending in .pkl')
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.test_evaluator = list(evaluators) + [dict(type='SafeDumpResults',
                                                      out_file_path=args.out)]
    if args.cuda_graph:
        with_inference_graphs(cfg)
    add_hook(cfg, dict(type='TestProgressHook'))  # batches done, rate, ETA
    # A training config may log every batch (the quickstart's does, for its few
    # iterations); over a test set that is a line a batch where the bar says it all.
    logger = (cfg.get('default_hooks') or {}).get('logger')
    if isinstance(logger, dict) and 0 < logger.get('interval', 0) < TEST_LOG_INTERVAL:
        logger['interval'] = TEST_LOG_INTERVAL
    cfg.setdefault('runner_type', 'AtomicSaveRunner')  # start-up dumps to the log only
    log_memory_footprint(cfg)  # 'memory' in the log: what the process holds
    check_data(cfg, ['test_dataloader'])
    setup_cpu_distributed(cfg, args.launcher)
    with distributed_run(dist_timeout(cfg)):
        metrics, failed, rank = run_test(cfg, args.allow_partial)
    if rank == 0:  # every rank gets the same metrics back
        print('metrics: ' + json.dumps({k: _number(v) for k, v in (metrics or {}).items()}))
    # After the metrics: a failed dump of the predictions loses nothing else.
    if failed:
        raise UserError(failed[0])
    problem = metrics_problem(metrics, cfg.test_evaluator)
    if problem and rank == 0:
        raise UserError(problem)


def run_test(cfg, allow_partial: bool):
    """Builds the runner and tests: the metrics, the evaluators' errors and this
    process's rank. The runner lives in this frame only, so that the process group it
    holds can be freed when the run ends."""
    from mmengine.dist import get_rank
    runner = build_runner(cfg)
    check_model_checkpoint(runner.model, cfg.load_from, allow_partial)
    metrics = runner.test()
    failed = [m.error for m in getattr(runner.test_loop.evaluator, 'metrics', [])
              if getattr(m, 'error', None)]
    return metrics, failed, get_rank()


def metrics_problem(metrics, evaluators) -> str:
    """Why an evaluation that ended must not pass as one ('' if it may): no metric at
    all (every prediction dropped: the model's outputs were not finite, as a diverged
    run's are), or metrics that are not finite. Evaluators that only format results
    (``format_only=True``, a test-server submission) give none on purpose."""
    evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
    if any(isinstance(e, dict) and e.get('format_only') for e in evaluators):
        return ''
    if not metrics:
        return ('the evaluation produced no metric (metrics: {}): the evaluators got no '
                'prediction to score. The model predicted nothing: its outputs were not '
                'finite (a checkpoint of a run that diverged: test an earlier one) or it '
                'is barely trained (every score below the test threshold).')
    numbers = {k: _number(v) for k, v in metrics.items()}
    bad = sorted(k for k, v in numbers.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        return (f'the evaluation produced metrics that are not numbers ({", ".join(bad)}): '
                f'the model\'s outputs were likely not finite (a run that diverged). Test '
                f'an earlier checkpoint of that run.')
    return ''


def _number(value):
    try:
        number = float(value)  # python, numpy and 0-d tensor scalars alike
    except (TypeError, ValueError):
        return str(value)
    if getattr(getattr(value, 'dtype', None), 'itemsize', 0) == 4:
        # A float32 metric (mmseg's): the digits it holds, not float64's noise
        # (38.32, not 38.31999969482422).
        number = float(f'{number:.7g}')
    return number


if __name__ == '__main__':
    try:
        main()
    except (UserError, ArgumentError, CheckpointError) as e:
        sys.exit(f'error: {e}')
