# Ablation, dense: Mask R-CNN 1x of maskrcnn_biformer_s.py with shunted self-attention
# in place of BRA in stages 1-3 (as configs/cls/ablation/biformer_s_shunted_in1k.py).
# Shunted attention pads the aggregated map itself, so any image size works.
# ImageNet weights: train the classification ablation first (its default work_dir is
# below), or pass another file with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['../maskrcnn_biformer_s.py']

model = dict(
    backbone=dict(
        attn_types=('shunted', 'shunted', 'shunted', 'global'),
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/biformer_s_shunted_in1k/epoch_300.pth')))
# Eager (no BackboneRuntimeHook): the shunted mixers have not been run captured on a GPU
# yet.
custom_hooks = []
