# Semantic FPN 80k with BiFormer-S on ADE20K (mmseg 1.x), carried from the official
# recipe: AdamW lr 2e-4, wd 1e-4, no decay on norms; cosine with a 1000-iteration
# linear warm-up (ratio 0.1); 8 GPUs x 4 images; 512x512 crops; drop path 0.15.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/biformer.py',
]
custom_imports = dict(imports=['mmbiformer.openmmlab'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(**_base_.biformer_s_seg_backbone, drop_path_rate=0.15),
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=4)
custom_hooks = _base_.biformer_seg_hooks

optim_wrapper = dict(
    _delete_=True,
    **_base_.biformer_optim_wrapper,
    optimizer=dict(**_base_.biformer_adamw, lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=1000, end=80000),
]
# Recipe: 8 GPUs x 4 images. tools/train.py --auto-scale-lr adapts lr and iterations to
# another total batch (mmbiformer/utils/batch_scaling.py).
auto_scale_lr = dict(enable=False, base_batch_size=32)
