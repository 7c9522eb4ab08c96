# Multi-scale (0.5-1.75) + flip test-time augmentation of UperNet BiFormer-S:
#   tools/test.py configs/seg/upernet_biformer_s_ms-flip.py CKPT
# (equivalently: tools/test.py configs/seg/upernet_biformer_s.py CKPT --tta)
_base_ = './upernet_biformer_s.py'
tta = True  # read by tools/test.py: model -> tta_model, pipeline -> tta_pipeline
