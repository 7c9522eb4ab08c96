# Mask R-CNN R-50-FPN 1x (mmdet 3.3's mask-rcnn_r50_fpn_1x_coco.py, unchanged otherwise)
# with a BRA block in every bottleneck of ResNet stages 3 and 4, after conv2 (the
# 3x3 conv, at the bottleneck's width: 256 and 512 channels), through ResNet's plugin
# mechanism as mmdet's GCNet and GeneralizedAttention configs add theirs. The block
# starts as the identity (zero-initialised last layers), so the ImageNet ResNet keeps
# its outputs at the start of training. 8x8 regions, top-8 routing; any image size.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbiformer.openmmlab'], allow_failed_imports=False)

model = dict(
    backbone=dict(plugins=[
        dict(cfg=dict(type='BRABlock', n_win=8, topk=8),
             stages=(False, False, True, True),
             position='after_conv2')
    ]))
