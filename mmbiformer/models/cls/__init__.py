"""mmpretrain parts (imported by the classification configs only: mmpretrain is optional)."""
from .sync_free_preprocessing import DeviceCutMix, DeviceMixup, SyncFreeClsDataPreprocessor

__all__ = ['DeviceCutMix', 'DeviceMixup', 'SyncFreeClsDataPreprocessor']
