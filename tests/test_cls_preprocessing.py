"""SyncFreeClsDataPreprocessor and DeviceMixup / DeviceCutMix against mmpretrain's own
ClsDataPreprocessor, Mixup and CutMix: the same batches, bit for bit, from the same
random draws on a CPU; no host synchronisation on a GPU."""
import copy

import numpy as np
import pytest
import torch

from mmbiformer.models.cls import SyncFreeClsDataPreprocessor
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.structures import DataSample

SETTINGS = dict(num_classes=10, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                to_rgb=True)


def _batch(labels, device='cpu'):
    torch.manual_seed(0)
    inputs = torch.randint(0, 256, (len(labels), 3, 8, 12), dtype=torch.uint8, device=device)
    return dict(inputs=inputs,
                data_samples=[DataSample().set_gt_label(lab) for lab in labels])


def _run(preprocessor, data, training, seed=3):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return preprocessor(copy.deepcopy(data), training)


@pytest.mark.parametrize('mix', ['Mixup', 'CutMix'])
@pytest.mark.parametrize('labels', [[3, 1, 4, 1, 5, 9], [[3, 1], [4], [1, 5], [9], [2], [6]],
                                    [[3, 1], [4], [], [9], [2], [6]]],
                         ids=['one-label', 'multi-label', 'as-many-labels-as-images'])
def test_same_batches_as_mmpretrain(mix, labels):
    augments = lambda kind: dict(augments=[dict(type=kind, alpha=0.8)])  # noqa: E731
    ours = SyncFreeClsDataPreprocessor(**SETTINGS, batch_augments=augments(f'Device{mix}'))
    theirs = ClsDataPreprocessor(**SETTINGS, batch_augments=augments(mix))
    data = _batch(labels)
    for training in (True, False):
        a, b = _run(ours, data, training), _run(theirs, data, training)
        assert torch.equal(a['inputs'], b['inputs'])
        for x, y in zip(a['data_samples'], b['data_samples']):
            assert torch.equal(x.gt_label, y.gt_label)
            assert torch.equal(x.gt_score, y.gt_score) and x.gt_score.dtype == y.gt_score.dtype
    if mix == 'Mixup':  # the batch was mixed, not passed through
        assert not torch.equal(_run(ours, data, True)['inputs'], _run(ours, data, False)['inputs'])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_no_host_synchronisation_cuda():
    """mmpretrain's preprocessor waits for the GPU (blocking label copy, CPU
    permutation); ours must not: CUDA's sync debug mode raises on any wait."""
    batch = _batch([3, 1, 4, 1, 5, 9])
    batch['inputs'] = batch['inputs'].pin_memory()
    mixes = dict(augments=[dict(type='DeviceMixup', alpha=0.8),
                           dict(type='DeviceCutMix', alpha=1.0)])
    ours = SyncFreeClsDataPreprocessor(**SETTINGS, batch_augments=mixes).cuda()
    ours(copy.deepcopy(batch), True)  # first call: lazy CUDA set-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for _ in range(4):
            out = ours(copy.deepcopy(batch), True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out['inputs'].is_cuda and out['data_samples'][0].gt_score.is_cuda
    theirs = ClsDataPreprocessor(**SETTINGS, batch_augments=dict(
        augments=[dict(type='Mixup', alpha=0.8)])).cuda()
    torch.cuda.set_sync_debug_mode('error')
    try:
        with pytest.raises(RuntimeError, match='synchroniz'):
            theirs(copy.deepcopy(batch), True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
