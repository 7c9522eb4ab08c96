"""``tools/test.py --out``: the predictions dumped without losing the metrics.

mmengine's ``DumpResults`` is an evaluator metric: it writes after the whole test epoch,
and a write that fails (disk full, a path that became unusable) raises there, before
any metric is printed. :class:`SafeDumpResults` keeps the error and lets the other
metrics through; ``tools/test.py`` prints them, then the error.
"""
from typing import Optional

from mmengine.evaluator import DumpResults
from mmengine.registry import METRICS


@METRICS.register_module()
class SafeDumpResults(DumpResults):
    """``DumpResults`` whose write error is kept in :attr:`error`, not raised."""

    # It computes no metric; a prefix keeps mmengine's "prefix is not set" warning
    # out of every ``--out`` run's console.
    default_prefix = 'dump'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error: Optional[str] = None

    def compute_metrics(self, results: list) -> dict:
        try:
            return super().compute_metrics(results)
        except OSError as e:
            self.error = (f'--out {self.out_file_path}: the predictions could not be '
                          f'written ({e.strerror or e})')
            return {}
