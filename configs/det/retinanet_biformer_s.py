# RetinaNet 1x with BiFormer-S on COCO (mmdet 3.x), carried from the official recipe:
# AdamW lr 1e-4, wd 1e-4; 12 epochs, steps at 8 and 11, 500 warm-up iterations;
# 1333x800, random flip; 8 GPUs x 2 images; mixed precision; FPN on stages 2-4 with
# extra convs on the input.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmbiformer.openmmlab', 'mmbiformer.models.det'],
                      allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='BiFormer',
        arch='small',
        n_win=16,
        auto_pad=True,
        # The official FPN takes all four stages with start_level=1; returning only
        # stages 2-4 (start_level=0 below) is the same network without an unused
        # stage-1 norm, which DDP would reject as an unused parameter.
        out_indices=(1, 2, 3),
        drop_path_rate=0.2,
        norm_eval=True,
        # Training replays the backbone as CUDA graphs, one per padded size: each
        # batch is padded to multiples of 128 (outputs cropped back), so a few
        # graphs serve COCO's many sizes (mmbiformer/engine/shape_graphs.py).
        cuda_graph=dict(size_divisor=128),
        # The MLPs' hidden activations are recomputed in the backward, not kept:
        # much less memory for one more first-layer product per block
        # (docs/benchmark.md, run 8).
        mlp_recompute='mlp',
        # Stages 1-2 (the largest maps) recompute their blocks in the backward, so
        # that the steady state's memory peak stays near Swin-T's at a small cost in
        # time (docs/benchmark.md, run 10).
        with_cp=[0, 1],
        init_cfg=dict(type='Pretrained', checkpoint='biformer-s_in1k')),
    neck=dict(in_channels=[128, 256, 512], start_level=0, add_extra_convs='on_input',
              num_outs=5),
    # mmcv's focal loss gives NaN for fp16 logits (mixed precision): computed in fp32.
    bbox_head=dict(loss_cls=dict(type='FP32FocalLoss')))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=1e-4,
                   # One fused kernel per step (no per-tensor host work, no
                   # host sync for the loss scaler's inf check).
                   fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.),
    # One param group per setting, not per parameter: a 10x cheaper optimizer step
    # (mmbiformer/engine/grouped_optim_constructor.py).
    constructor='GroupedOptimWrapperConstructor')
