"""Training outputs reach the message hub one iteration late (``AsyncRuntimeInfoHook``,
``LaggedValues``), with the last ones added at the end of an epoch; the model's batch
copies stop waiting for the GPU. CPU: the lag is forced (on a GPU it is what values on
the GPU get)."""
import types

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseDataPreprocessor

from mmbiformer.engine import AsyncRuntimeInfoHook
from mmbiformer.engine.host_copies import LaggedValues


def test_lagged_values_come_back_one_call_late_as_numbers():
    late = LaggedValues(lag=True)
    value = torch.tensor(1.0)
    assert late.swap({'loss': value, 'acc': 0.5}, tag=0) is None
    value.fill_(7.0)  # the step's buffer is overwritten: the copy is not
    assert late.swap({'loss': torch.tensor(2.0), 'acc': 0.25}, tag=1) == (
        {'loss': 1.0, 'acc': 0.5}, 0)
    assert late.take() == ({'loss': 2.0, 'acc': 0.25}, 1)
    assert late.take() is None
    # Without GPU tensors (and without forcing) nothing waits: back at once.
    assert LaggedValues().swap({'loss': torch.tensor(3.0)}, tag=5) == ({'loss': 3.0}, 5)


def _runner():
    runner = types.SimpleNamespace(
        message_hub=MessageHub.get_instance('test_async_runtime_info'),
        epoch=0, iter=0, max_epochs=1, max_iters=3,
        train_dataloader=types.SimpleNamespace(dataset=object()))
    model = types.SimpleNamespace(data_preprocessor=BaseDataPreprocessor())
    runner.model = types.SimpleNamespace(module=model)  # as wrapped by DDP
    return runner, model


def test_losses_reach_the_message_hub_one_iteration_late_and_all_by_the_epoch_end():
    runner, model = _runner()
    hook = AsyncRuntimeInfoHook()
    hook.late = LaggedValues(lag=True)
    hook.before_train(runner)
    assert model.data_preprocessor._non_blocking  # batch copies do not wait
    for i in range(3):
        runner.iter = i
        hook.after_train_iter(runner, i, outputs={'loss': torch.tensor(float(i))})
    history = runner.message_hub.get_scalar('train/loss')
    assert list(history.data[0]) == [0.0, 1.0]
    hook.after_train_epoch(runner)
    assert list(history.data[0]) == [0.0, 1.0, 2.0]
