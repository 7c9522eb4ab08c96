"""mmdet parts (imported by the detection configs only: mmdet is optional)."""
from .bucketed_mask_head import BucketedFCNMaskHead

__all__ = ['BucketedFCNMaskHead']
