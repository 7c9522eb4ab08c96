# UperNet 160k with BiFormer-S on ADE20K (mmseg 1.x), carried from the official
# mmseg 0.x recipe: AdamW lr 6e-5, wd 0.01, no decay on norms; poly (power 1.0) after
# a 1500-iteration linear warm-up from 1e-6; 8 GPUs x 2 images; 512x512 crops from
# Resize (2048, 512) x [0.5, 2.0]; auxiliary FCN head; drop path 0.3; mixed precision;
# BiFormer with n_win 8, auto-padding, SyncBN in the conv stem when distributed.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../_base_/biformer.py',
]
custom_imports = dict(imports=['mmbiformer.openmmlab'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(**_base_.biformer_s_seg_backbone, drop_path_rate=0.3),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

train_dataloader = dict(batch_size=2)
custom_hooks = _base_.biformer_seg_hooks

optim_wrapper = dict(
    _delete_=True,
    **_base_.biformer_optim_wrapper,
    optimizer=dict(**_base_.biformer_adamw, lr=6e-5, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
# Recipe: 8 GPUs x 2 images. tools/train.py --auto-scale-lr adapts lr and iterations to
# another total batch (mmbiformer/utils/batch_scaling.py).
auto_scale_lr = dict(enable=False, base_batch_size=16)
