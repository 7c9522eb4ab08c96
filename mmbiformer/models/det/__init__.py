"""mmdet parts (imported by the detection configs only: mmdet is optional)."""
from .bucketed_mask_head import BucketedFCNMaskHead
from .csp_bra import BRACSPNeXtPAFPN, CSPLayerBRA
from .mixed_precision import BF16SafeRoIExtractor, FP32FocalLoss

__all__ = ['BF16SafeRoIExtractor', 'BRACSPNeXtPAFPN', 'BucketedFCNMaskHead', 'CSPLayerBRA',
           'FP32FocalLoss']
