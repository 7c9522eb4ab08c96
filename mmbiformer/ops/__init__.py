from .bra import BiLevelRoutingAttention, set_attn_impl

__all__ = ['BiLevelRoutingAttention', 'set_attn_impl']
