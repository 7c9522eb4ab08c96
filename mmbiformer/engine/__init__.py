from .grouped_optim_constructor import GroupedOptimWrapperConstructor
from .rng_state_hook import RNGStateHook

__all__ = ['GroupedOptimWrapperConstructor', 'RNGStateHook']
