"""The ops' runtime policy (:mod:`mmbiformer.ops.policy`) set from a config:

    custom_hooks = [dict(type='RuntimePolicyHook', layer_norm_triton_min_elements=0)]

The switches are checked when the hook is built (a wrong name or value stops the run
before any data is read); the policy holds from the run's start to its end, then the
previous one is back."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..ops.policy import current_policy, policy_with, set_runtime_policy


@HOOKS.register_module()
class RuntimePolicyHook(Hook):
    """Sets the switches of :class:`~mmbiformer.ops.policy.RuntimePolicy` given as
    keyword arguments for the run (``captured`` is not one: the engine sets it around
    its captures)."""

    priority = 'VERY_HIGH'

    def __init__(self, **switches):
        if 'captured' in switches:
            raise ValueError('RuntimePolicyHook: captured is set by the engine around '
                             'CUDA graph captures, not by a config')
        policy_with(**switches)  # names and values checked now
        self.switches = switches
        self.before = None

    def before_run(self, runner) -> None:
        self.before = set_runtime_policy(**self.switches)
        runner.logger.info(f'runtime policy: {current_policy()}')

    def after_run(self, runner) -> None:
        if self.before is not None:
            set_runtime_policy(**{k: getattr(self.before, k) for k in self.switches})
            self.before = None
