"""A progress bar over the test loop: mmengine logs a test line every ``interval``
iterations (50 by default), so a test epoch is otherwise silent for a long time (COCO's
5000 images: hours on a CPU)."""
import sys

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.utils import ProgressBar


@HOOKS.register_module()
class TestProgressHook(Hook):
    """Batches done out of the test loader's, their rate and the ETA, on the main
    process (each process runs its share of the batches)."""

    # Before mmengine's LoggerHook (BELOW_NORMAL): the bar's line is ended before the
    # logger prints its own, so that the two never share a line.
    priority = 'NORMAL'

    def __init__(self, file=None):
        self.file = file
        self.bar = None
        self.log_interval = 0

    def before_test_epoch(self, runner) -> None:
        loggers = [h for h in getattr(runner, 'hooks', []) if type(h).__name__ == 'LoggerHook']
        self.log_interval = loggers[0].interval if loggers else 0
        if is_main_process() and self.log_interval != 1:  # 1: every batch logged anyway
            self.bar = ProgressBar(len(runner.test_dataloader), file=self.file or sys.stdout)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.bar is None:
            return
        self.bar.update()
        last = self.bar.completed >= self.bar.task_num
        if last or self.log_interval and (batch_idx + 1) % self.log_interval == 0:
            # The logger's line comes next; after the last batch, the evaluators' lines
            # ('Evaluating bbox...'), which come before after_test_epoch.
            self.bar.file.write('\n')
            self.bar.file.flush()
        if last:
            self.bar = None

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self.bar is not None:  # a loader that gave fewer batches than its length
            self.bar.file.write('\n')
            self.bar.file.flush()
            self.bar = None
