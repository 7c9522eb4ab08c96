# Old name of rtmdet_bra_s.py (configs/det names follow <detector>_<backbone>_<size>).
_base_ = './rtmdet_bra_s.py'
