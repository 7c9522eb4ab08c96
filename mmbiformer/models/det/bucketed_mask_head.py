"""Mask head whose convolutions see a few batch sizes instead of hundreds.

The mask head runs on the positive RoIs of a batch (training) or the detections
(testing): a different count at nearly every iteration. cuDNN sets up a plan for each
new input shape, on the host and many times the head's GPU work (figures in
``docs/gpu_runs.md``), so the first few hundred iterations spend most of their time
there, and under DDP every rank waits for whichever rank met a new count. Padding the
RoI count up to a multiple of ``roi_bucket`` leaves a handful of shapes.

The padded rows are zeros and are sliced off before anything reads the output: the
forward output and all gradients are those of the unpadded head (layers act on each RoI
alone; batch-coupled norms are refused).
"""
import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS
from torch import Tensor

_BATCH_NORMS = ('BN', 'BN2d', 'SyncBN', 'MMSyncBN', 'BatchNorm', 'BatchNorm2d')


@MODELS.register_module()
class BucketedFCNMaskHead(FCNMaskHead):
    """:class:`mmdet FCNMaskHead <mmdet.models.roi_heads.mask_heads.FCNMaskHead>` that
    pads the RoI count to a multiple of ``roi_bucket`` (0 turns padding off)."""

    def __init__(self, *args, roi_bucket: int = 32, **kwargs):
        if not isinstance(roi_bucket, int) or roi_bucket < 0:
            raise ValueError(f'roi_bucket must be an integer >= 0 (0: no padding), '
                             f'got {roi_bucket!r}')
        norm = (kwargs.get('norm_cfg') or {}).get('type')
        if roi_bucket and norm in _BATCH_NORMS:
            raise ValueError(f'BucketedFCNMaskHead with norm_cfg type {norm!r}: batch '
                             f'statistics would include the padding RoIs; use GN or set '
                             f'roi_bucket=0')
        super().__init__(*args, **kwargs)
        self.roi_bucket = roi_bucket

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        padded = -(-n // self.roi_bucket) * self.roi_bucket if self.roi_bucket else n
        if padded == n:
            return super().forward(x)
        x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
        return super().forward(x)[:n]
