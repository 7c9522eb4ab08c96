# Mask R-CNN 1x with BiFormer-S on COCO (mmdet 3.x), carried from the official
# mmdet 2.x recipe: AdamW lr 1e-4, wd 0.05, no decay on norms; 12 epochs, steps at
# 8 and 11, 500 warm-up iterations; 1333x800 with random flip; 8 GPUs x 2 images;
# mixed precision; BiFormer with n_win 16, auto-padding, drop path 0.2, frozen BN stats.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/biformer.py',
]
custom_imports = dict(imports=['mmbiformer.openmmlab', 'mmbiformer.models.det'],
                      allow_failed_imports=False)

model = dict(
    backbone=dict(**_base_.biformer_s_det_backbone, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 128, 256, 512]),
    # FCNMaskHead with the RoI count padded to a multiple of 32: cuDNN then sets up
    # plans for a few shapes instead of one per count (same outputs and gradients).
    # mmcv's RoIAlign has no bf16 kernel: BF16SafeRoIExtractor aligns bf16 features in
    # fp32 (optim_wrapper.dtype=bfloat16 works; fp16 and fp32 are unchanged).
    roi_head=dict(bbox_roi_extractor=dict(type='BF16SafeRoIExtractor'),
                  mask_roi_extractor=dict(type='BF16SafeRoIExtractor'),
                  mask_head=dict(type='BucketedFCNMaskHead', roi_bucket=32)))

optim_wrapper = dict(
    **_base_.biformer_optim_wrapper,
    optimizer=dict(_delete_=True, **_base_.biformer_adamw, lr=1e-4, weight_decay=0.05))
# The base schedule gives: linear warm-up 500 iters, MultiStepLR [8, 11], 12 epochs,
# auto_scale_lr base batch 16 (enable with --cfg-options auto_scale_lr.enable=True).

custom_hooks = _base_.biformer_det_hooks
