# Old name of maskrcnn_r50_bra.py (configs/det names follow <detector>_<backbone>_<size>).
_base_ = './maskrcnn_r50_bra.py'
