# What BiFormer's detection and segmentation configs share, as variables each config
# unpacks with its own settings, e.g.
#   backbone=dict(**_base_.biformer_s_det_backbone, out_indices=(0, 1, 2, 3))
#   optim_wrapper = dict(**_base_.biformer_optim_wrapper,
#                        optimizer=dict(_delete_=True, **_base_.biformer_adamw, lr=1e-4))

# COCO (mmdet): n_win 16 with auto-padding, drop path 0.2, frozen BN statistics.
biformer_s_det_backbone = dict(
    _delete_=True, type='BiFormer', arch='small', n_win=16, auto_pad=True,
    drop_path_rate=0.2, norm_eval=True,
    # What the backward recomputes instead of keeping. Stages 1-2 (the largest maps)
    # recompute their blocks, so that the steady state's memory peak stays near
    # Swin-T's at a small cost in time (docs/benchmark_history.md, run 10); the MLPs
    # of the others their hidden activations: much less memory for one more
    # first-layer product per block (run 8).
    with_cp=[0, 1],
    mlp_recompute='mlp',
    init_cfg=dict(type='Pretrained', checkpoint='biformer-s_in1k'))

# COCO (mmdet): how the backbone runs (mmbiformer/engine/backbone_runtime.py), not what
# it computes. Used as ``custom_hooks = _base_.biformer_det_hooks``.
biformer_det_hooks = [
    dict(type='BackboneRuntimeHook',
         # Training replays the backbone as CUDA graphs, one per padded size: each
         # batch is padded to multiples of 128 (outputs cropped back), so a few graphs
         # serve COCO's many sizes (mmbiformer/engine/shape_graphs.py). Validation and
         # testing replay one graph per image size (at most 64 kept): the host
         # launches one graph instead of each of the backbone's kernels.
         # Eager: --cfg-options custom_hooks.0.cuda_graph=False
         cuda_graph=dict(size_divisor=128, inference_graphs=64)),
    # The graphs for every size the pipelines can make are captured before the first
    # iteration and before the first validation or test, so that no iteration stalls
    # on a capture (and, in distributed training, no rank waits for another's).
    dict(type='CaptureAheadHook'),
]

# ADE20K (mmseg): n_win 8 with auto-padding, SyncBN in the conv stem when distributed
# (single-process runs turn it back into BN: mmengine's Runner).
biformer_s_seg_backbone = dict(
    _delete_=True, type='BiFormer', arch='small', n_win=8, auto_pad=True,
    out_indices=(0, 1, 2, 3), norm_cfg=dict(type='SyncBN', requires_grad=True),
    # The MLPs' hidden activations are recomputed in the backward, not kept.
    mlp_recompute='mlp',
    init_cfg=dict(type='Pretrained', checkpoint='biformer-s_in1k'))

# ADE20K (mmseg): training replays the backbone as CUDA graphs, one per exact size (one
# size: the crops); a multi-GPU run keeps the stem's SyncBN and so runs it eagerly
# (warned). Used as ``custom_hooks = _base_.biformer_seg_hooks``.
biformer_seg_hooks = [dict(type='BackboneRuntimeHook', cuda_graph=dict(size_divisor=None))]

# Mixed precision with a dynamic loss scale; no weight decay on norms.
biformer_optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic', paramwise_cfg=dict(norm_decay_mult=0.),
    # One param group per setting, not per parameter: a 10x cheaper optimizer step
    # (mmbiformer/engine/grouped_optim_constructor.py).
    constructor='GroupedOptimWrapperConstructor')
# One fused kernel per step (no per-tensor host work, no host sync for the loss
# scaler's inf check); the configs add the learning rate and the weight decay.
biformer_adamw = dict(type='AdamW', betas=(0.9, 0.999), fused=True)
