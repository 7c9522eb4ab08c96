#!/usr/bin/env python
"""Train any config of configs/{cls,det,seg} with mmengine's Runner.

    python tools/train.py configs/det/maskrcnn_biformer_s.py [--amp] [--resume [CKPT]]
        [--resume-if-possible | --start-over]
    tools/dist_train.sh configs/det/maskrcnn_biformer_s.py 8
"""
import argparse
import logging
import os
import sys

import mmbiformer.openmmlab  # noqa: F401  (stack fixes before any toolbox import)
from mmbiformer.errors import ArgumentError
from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.data import check_images
from mmbiformer.engine import CheckpointSaveError, NonFiniteLossError
from mmbiformer.weights.model_zoo import ModelZooError
from mmbiformer.utils.batch_scaling import batch_policy
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmbiformer.errors import UserError
from mmbiformer.weights.checkpoint_refs import readable_checkpoint
from mmbiformer.utils.data_checks import check_data
from mmbiformer.utils.distributed import (
    dist_timeout, distributed_run, setup_cpu_distributed)
from mmbiformer.utils.launch import (
    add_hook, build_runner, config_errors, log_memory_footprint, fit_to_device,
    parse_tool_args, tool_config, use_amp)
from mmbiformer.engine.resume import NothingLeftToTrain, newest_checkpoint, resolve_resume
from mmbiformer.utils.work_dir_lock import work_dir_lock


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or (no value) from the latest '
                        'checkpoint in the work dir (an error if it has none)')
    parser.add_argument('--resume-if-possible', action='store_true',
                        help='resume from the latest checkpoint in the work dir if there '
                        'is one, else start from scratch')
    parser.add_argument('--start-over', action='store_true',
                        help='start a new run in a work dir that holds checkpoints: they '
                        'are moved to WORK_DIR/previous-<time>/ first (training from '
                        'scratch is otherwise refused there, as it would overwrite them)')
    parser.add_argument('--amp', action='store_true', help='mixed precision (fp16)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='start from a load_from checkpoint even if it leaves weights '
                        'beyond the heads unloaded or mis-shaped (refused otherwise)')
    parser.add_argument('--check-images', action='store_true',
                        help='decode every image and label map of the train and val '
                        'data before training (tools/check_data.py does it alone)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="when the total batch differs from the recipe's: scale the "
                        'learning rate linearly and, for iteration-based schedules, the '
                        'iterations (as many images seen)')
    return parse_tool_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = tool_config(args)
    # One run per work dir, from before the resume looks for checkpoints to the end.
    with work_dir_lock(cfg.work_dir):
        train(args, cfg)


def train(args, cfg) -> None:
    if args.amp:
        use_amp(cfg)
    resolve_resume(cfg, args.resume, args.resume_if_possible, args.start_over)
    if cfg.get('load_from') and not cfg.get('resume'):  # weights to start from
        cfg.load_from = readable_checkpoint(cfg.load_from)
    add_hook(cfg, dict(type='RNGStateHook'))  # exact resume (random state saved)
    add_hook(cfg, dict(type='NonFiniteLossHook'))  # stop at the first NaN/inf loss
    add_hook(cfg, dict(type='ProgressMarkHook'))  # a stalled rank can be named
    cfg.setdefault('runner_type', 'AtomicSaveRunner')  # no half-written checkpoints
    log_memory_footprint(cfg)  # 'memory' in the log: what the process holds
    fit_to_device(cfg)
    world_size = int(os.environ.get('WORLD_SIZE', 1)) if args.launcher != 'none' else 1
    for message in batch_policy(cfg, world_size, args.auto_scale_lr):
        print_log(message, logger='current', level=logging.WARNING)
    check_data(cfg, ['train_dataloader', 'val_dataloader'])
    if args.check_images:
        check_images(cfg, ['train_dataloader', 'val_dataloader'])
    setup_cpu_distributed(cfg, args.launcher)
    where = f' --work-dir {args.work_dir}' if args.work_dir else ''
    resume = resume_command(args.config, world_size, where)
    try:
        with distributed_run(dist_timeout(cfg), resume):
            run_training(cfg, args.allow_partial)
    except KeyboardInterrupt:  # one line, not mmengine's and torch's traceback
        raise Interrupted(interrupted_message(cfg.work_dir, resume)) from None


class Interrupted(Exception):
    """Ctrl-C (SIGINT) during a run: what is saved and how to go on."""


def interrupted_message(work_dir: str, resume: str) -> str:
    newest, _ = newest_checkpoint(work_dir)
    if newest is None:
        return (f'interrupted before the first checkpoint of {work_dir}: nothing was '
                f'saved; start again with the same command.')
    return f'interrupted: {newest} is the newest checkpoint; continue with: {resume}'


def run_training(cfg, allow_partial: bool) -> None:
    """Builds the runner and trains; the runner lives in this frame only, so that the
    process group it holds can be freed when the run ends."""
    runner = build_runner(cfg)
    check_start_weights(runner, cfg, allow_partial)
    runner.register_hook(NothingLeftToTrain(), priority='LOWEST')
    # Until the first iteration, a refused value is the config's (a hook's setting
    # checked when the run starts), not a fault of training.
    first = FirstIteration()
    runner.register_hook(first, priority='HIGHEST')
    with config_errors('the run could not start', lambda: not first.started):
        runner.train()


class FirstIteration(Hook):
    """Notes that training reached its first iteration (set-up is over)."""

    started = False

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.started = True


def resume_command(config: str, world_size: int, where: str) -> str:
    """The command that resumes this run where it runs: dist_train.sh starts one
    process per GPU and refuses several on a machine without GPUs, where torchrun
    itself does it (gloo)."""
    import torch
    if world_size == 1:
        return f'python tools/train.py {config} --resume{where}'
    if torch.cuda.is_available():
        return f'tools/dist_train.sh {config} {world_size} --resume{where}'
    return (f'python -m torch.distributed.run --nproc_per_node={world_size} tools/train.py '
            f'{config} --launcher pytorch --resume{where}')


def check_start_weights(runner, cfg, allow_partial: bool) -> None:
    """The checkpoint a run resumes or starts from, against the built model, before
    mmengine loads it: it loads ``load_from`` non-strictly (another arch's weights
    would train a half-random model after a log line) and meets a resumed optimizer
    state of another model with a traceback."""
    path = cfg.get('load_from')
    if not path:
        return
    if cfg.get('resume'):
        check_model_checkpoint(runner.model, path,
                               hint='Resume with the config this run was trained with.')
    else:  # a fine-tune's start: its heads may differ (another number of classes)
        check_model_checkpoint(runner.model, path, allow_partial, heads_may_differ=True,
                               hint='To start from the weights that fit anyway, pass '
                               '--allow-partial.')


if __name__ == '__main__':
    try:
        main()
    except (UserError, ArgumentError, CheckpointError,
            ModelZooError,  # init_cfg checkpoints too
            NonFiniteLossError, CheckpointSaveError) as e:
        sys.exit(f'error: {e}')
    except Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)  # as a shell reports a run stopped by SIGINT
