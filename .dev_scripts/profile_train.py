"""Profile training iterations [START, STOP) of CONFIG with torch.profiler and print the
ops that take the most host (CPU) time, split by input shapes: shows which layer's
shapes are slow to set up (e.g. cuDNN plans for shapes seen for the first time).
    python .dev_scripts/profile_train.py CONFIG START STOP [key=value ...]"""
import argparse

import torch

import mmbiformer.openmmlab  # noqa: E402,F401  (stack fixes, registrations)
from mmengine.config import DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

from mmbiformer.utils.launch import build_runner, fit_to_device, load_config  # noqa: E402


class ProfileWindow(Hook):
    def __init__(self, start: int, stop: int, rows: int = 18):
        self.start, self.stop, self.rows, self.prof = start, stop, rows, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(record_shapes=True, activities=activities)
            self.prof.__enter__()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.stop and self.prof is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.prof.__exit__(None, None, None)
            table = self.prof.key_averages(group_by_input_shape=True).table(
                sort_by='self_cpu_time_total', row_limit=self.rows, max_name_column_width=36,
                max_shapes_column_width=70)
            print(f'profile of iterations {self.start}..{self.stop - 1}:\n{table}', flush=True)
            self.prof = None


parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('start', type=int)
parser.add_argument('stop', type=int)
parser.add_argument('options', nargs='*', action=DictAction)
args = parser.parse_args()
cfg = load_config(args.config, args.options, '/tmp/profile_train')
fit_to_device(cfg)
runner = build_runner(cfg)
runner.register_hook(ProfileWindow(args.start, args.stop), priority='LOWEST')
runner.train()
