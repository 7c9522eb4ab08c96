from .synthetic import MAKERS, make_ade20k, make_coco, make_imagenet

__all__ = ['MAKERS', 'make_ade20k', 'make_coco', 'make_imagenet']
