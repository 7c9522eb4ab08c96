"""mmdet parts that run in fp32 where mmcv 2.1.0's kernels fail in half precision.

Named in our detection configs instead of patching mmcv for the whole process:

* :class:`FP32FocalLoss` (RetinaNet): mmcv's sigmoid focal loss runs in its input's
  dtype. Under fp16 autocast, logits below about -11 make ``exp`` overflow and
  ``log(p)`` of an underflowed ``p`` gives NaN (``loss_cls: nan`` after some
  iterations, then every AMP step is skipped); it has no bf16 kernel either.
* :class:`BF16SafeRoIExtractor` (Mask R-CNN): mmcv's RoIAlign has no bf16 kernel (CPU
  or CUDA), so bf16 autocast broke the RoI heads. mmdet builds the RoI layer from
  ``mmcv.ops`` by name, so the fix sits one level up, in the extractor.
"""
import torch
from mmdet.models.losses import FocalLoss
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS

_HALF = (torch.float16, torch.bfloat16)


@MODELS.register_module()
class FP32FocalLoss(FocalLoss):
    """mmdet's :class:`FocalLoss` (same arguments) computed in fp32 for fp16/bf16
    logits; autograd casts the gradient back to the logits' dtype."""

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        if pred.dtype in _HALF:
            pred = pred.float()
            if weight is not None and weight.dtype in _HALF:
                weight = weight.float()
        return super().forward(pred, target, weight, avg_factor, reduction_override)


@MODELS.register_module()
class BF16SafeRoIExtractor(SingleRoIExtractor):
    """mmdet's :class:`SingleRoIExtractor` (same arguments) that aligns bf16 features
    in fp32 and returns bf16; other dtypes pass through unchanged."""

    def forward(self, feats, rois, roi_scale_factor=None):
        if feats[0].dtype != torch.bfloat16:
            return super().forward(feats, rois, roi_scale_factor)
        out = super().forward(tuple(f.float() for f in feats), rois.float(),
                              roi_scale_factor)
        return out.to(torch.bfloat16)
