from .async_runtime_info import AsyncRuntimeInfoHook
from .atomic_save_runner import AtomicSaveRunner, CheckpointSaveError
from .dump_results import SafeDumpResults
from .footprint_log import FootprintLogProcessor
from .backbone_runtime_hook import BackboneRuntimeHook
from .capture_ahead_hook import CaptureAheadHook
from .captured_train_step import CapturedTrainStep, CapturedTrainStepHook
from .foreach_ema import ForeachExponentialMovingAverage
from .grouped_optim_constructor import GroupedOptimWrapperConstructor
from .nonfinite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .rng_state_hook import RNGStateHook
from .runtime_policy_hook import RuntimePolicyHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .stalled_rank import ProgressMarkHook
from .test_progress_hook import TestProgressHook

__all__ = ['AsyncRuntimeInfoHook', 'AtomicSaveRunner', 'BackboneRuntimeHook', 'CaptureAheadHook',
           'CapturedTrainStep', 'CapturedTrainStepHook',
           'CheckpointSaveError', 'FootprintLogProcessor',
           'ForeachExponentialMovingAverage',
           'GroupedOptimWrapperConstructor',
           'NonFiniteLossError', 'NonFiniteLossHook', 'ProgressMarkHook', 'RNGStateHook',
           'RuntimePolicyHook',
           'SafeCheckpointHook', 'SafeDumpResults', 'TestProgressHook']
