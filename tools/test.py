#!/usr/bin/env python
"""Evaluate a checkpoint on the test split of any config of configs/{cls,det,seg}.

    python tools/test.py configs/seg/upernet_biformer_s.py work_dirs/.../iter_160000.pth
    tools/dist_test.sh configs/seg/upernet_biformer_s.py CKPT 8
"""
import argparse
import json
import sys

import mmbiformer.openmmlab  # noqa: F401  (stack fixes before any toolbox import)
from mmbiformer.errors import ArgumentError
from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.utils.launch import (UserError, add_hook, build_runner,
                                     check_data, checkpoint_file, dist_timeout,
                                     distributed_run,
                                     log_memory_footprint, parse_tool_args,
                                     prepare_output,
                                     setup_cpu_distributed,
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
    return parse_tool_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = tool_config(args)
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
    add_hook(cfg, dict(type='TestProgressHook'))  # batches done, rate, ETA
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


def _number(value):
    try:
        return float(value)  # python, numpy and 0-d tensor scalars alike
    except (TypeError, ValueError):
        return str(value)


if __name__ == '__main__':
    try:
        main()
    except (UserError, ArgumentError, CheckpointError) as e:
        sys.exit(f'error: {e}')
