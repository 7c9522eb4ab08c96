# BiFormer-S on ImageNet-1k (mmpretrain). Official recipe: 300 epochs, AdamW
# lr 5e-4 x total_batch / 512, wd 0.05, cosine to 1e-5 after 5 warm-up epochs,
# RandAugment m9 mstd0.5, Mixup 0.8, CutMix 1.0, label smoothing 0.1, random erasing
# 0.25, repeated augmentation, EMA 0.99996, drop path 0.15; 8 GPUs x 128 images.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmbiformer.openmmlab', 'mmbiformer.models.cls'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='BiFormer',
        arch='small',
        n_win=7,
        out_indices=(3, ),
        out_norm='batchnorm',  # the official classification norm (BatchNorm2d)
        dwconv_impl='cudnn',  # fixed input size: cuDNN plans once, then is fastest
        drop_path_rate=0.15),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    # mmpretrain's Mixup and CutMix, their permutations drawn on the GPU.
    train_cfg=dict(augments=[dict(type='DeviceMixup', alpha=0.8),
                             dict(type='DeviceCutMix', alpha=1.0)]),
)
# mmpretrain's preprocessing without waiting for the GPU (labels copied through pinned
# memory, permutations on the GPU), so that the host prepares the next batch while the
# captured step runs (mmbiformer/models/cls/sync_free_preprocessing.py).
data_preprocessor = dict(type='SyncFreeClsDataPreprocessor')

# One uint8 batch tensor per iteration (default_collate) instead of a list of 128: the
# main process receives one shared-memory tensor, and the data preprocessor normalises
# the batch in a few kernels instead of a few per image; pinned for a fast copy.
# 14 workers (mmpretrain's base has 5): one worker runs this pipeline far slower than
# the captured step takes images; tools/train.py lowers the count to what the
# machine's cores allow per process (docs/benchmark_history.md, run 12).
train_dataloader = dict(batch_size=128, collate_fn=dict(type='default_collate'),
                        num_workers=14, pin_memory=True,
                        sampler=dict(type='RepeatAugSampler', _delete_=True))
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

# lr 1e-3 = 5e-4 x 1024 / 512 (from the base schedule); no decay on norms, biases.
# One param group per setting, not per parameter (the schedule's paramwise_cfg would
# make one per parameter): mmbiformer/engine/grouped_optim_constructor.py.
optim_wrapper = dict(clip_grad=None, constructor='GroupedOptimWrapperConstructor')
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300),
]
auto_scale_lr = dict(base_batch_size=1024)

# EMA decay 0.99996 (mmengine counts momentum as 1 - decay), updated with multi-tensor
# kernels (mmbiformer/engine/foreach_ema.py). Fixed-size batches: after 3 eager steps
# the training step is captured in a CUDA graph and replayed, which removes the host
# cost of launching its kernels (mmbiformer/engine/captured_train_step.py; on a machine
# without CUDA the hook says so and training runs eagerly).
custom_hooks = [
    dict(type='EMAHook', ema_type='ForeachExponentialMovingAverage', momentum=4e-5,
         priority='ABOVE_NORMAL'),
    dict(type='CapturedTrainStepHook'),
]
# The host does not wait for the GPU between iterations: the losses reach the log one
# iteration late and batches are copied to the GPU without waiting, so the next batch
# is prepared while the captured step runs (mmbiformer/engine/async_runtime_info.py).
default_hooks = dict(runtime_info=dict(type='AsyncRuntimeInfoHook'))
