from .atomic_save_runner import AtomicSaveRunner, CheckpointSaveError
from .grouped_optim_constructor import GroupedOptimWrapperConstructor
from .nonfinite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .rng_state_hook import RNGStateHook
from .stalled_rank import ProgressMarkHook

__all__ = ['AtomicSaveRunner', 'CheckpointSaveError', 'GroupedOptimWrapperConstructor',
           'NonFiniteLossError', 'NonFiniteLossHook', 'ProgressMarkHook', 'RNGStateHook']
