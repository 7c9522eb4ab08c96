from .bra import BiLevelRoutingAttention

__all__ = ['BiLevelRoutingAttention']
