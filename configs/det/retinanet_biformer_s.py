# RetinaNet 1x with BiFormer-S on COCO (mmdet 3.x), carried from the official recipe:
# AdamW lr 1e-4, wd 1e-4; 12 epochs, steps at 8 and 11, 500 warm-up iterations;
# 1333x800, random flip; 8 GPUs x 2 images; mixed precision; FPN on stages 2-4 with
# extra convs on the input.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/biformer.py',
]
custom_imports = dict(imports=['mmbiformer.openmmlab', 'mmbiformer.models.det'],
                      allow_failed_imports=False)

model = dict(
    backbone=dict(
        **_base_.biformer_s_det_backbone,
        # The official FPN takes all four stages with start_level=1; returning only
        # stages 2-4 (start_level=0 below) is the same network without an unused
        # stage-1 norm, which DDP would reject as an unused parameter.
        out_indices=(1, 2, 3)),
    neck=dict(in_channels=[128, 256, 512], start_level=0, add_extra_convs='on_input',
              num_outs=5),
    # mmcv's focal loss gives NaN for fp16 logits (mixed precision): computed in fp32.
    bbox_head=dict(loss_cls=dict(type='FP32FocalLoss')))

optim_wrapper = dict(
    **_base_.biformer_optim_wrapper,
    optimizer=dict(_delete_=True, **_base_.biformer_adamw, lr=1e-4, weight_decay=1e-4))

custom_hooks = _base_.biformer_det_hooks
