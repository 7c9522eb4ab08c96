"""Generated data for tests, the quickstart and benchmarks (as mmdet keeps its test
helpers in ``mmdet.testing``): small learnable datasets in the real layouts."""
from .synthetic_data import MAKERS, MAX_CLASSES, make_ade20k, make_coco, make_imagenet

__all__ = ['MAKERS', 'MAX_CLASSES', 'make_ade20k', 'make_coco', 'make_imagenet']
