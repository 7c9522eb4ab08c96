# Mask R-CNN 1x with BiFormer-S on COCO (mmdet 3.x), carried from the official
# mmdet 2.x recipe: AdamW lr 1e-4, wd 0.05, no decay on norms; 12 epochs, steps at
# 8 and 11, 500 warm-up iterations; 1333x800 with random flip; 8 GPUs x 2 images;
# mixed precision; BiFormer with n_win 16, auto-padding, drop path 0.2, frozen BN stats.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
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
        out_indices=(0, 1, 2, 3),
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
    neck=dict(in_channels=[64, 128, 256, 512]),
    # FCNMaskHead with the RoI count padded to a multiple of 32: cuDNN then sets up
    # plans for a few shapes instead of one per count (same outputs and gradients).
    # mmcv's RoIAlign has no bf16 kernel: BF16SafeRoIExtractor aligns bf16 features in
    # fp32 (optim_wrapper.dtype=bfloat16 works; fp16 and fp32 are unchanged).
    roi_head=dict(bbox_roi_extractor=dict(type='BF16SafeRoIExtractor'),
                  mask_roi_extractor=dict(type='BF16SafeRoIExtractor'),
                  mask_head=dict(type='BucketedFCNMaskHead', roi_bucket=32)))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05,
                   # One fused kernel per step (no per-tensor host work, no
                   # host sync for the loss scaler's inf check).
                   fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.),
    # One param group per setting, not per parameter: a 10x cheaper optimizer step
    # (mmbiformer/engine/grouped_optim_constructor.py).
    constructor='GroupedOptimWrapperConstructor')
# The base schedule gives: linear warm-up 500 iters, MultiStepLR [8, 11], 12 epochs,
# auto_scale_lr base batch 16 (enable with --cfg-options auto_scale_lr.enable=True).
