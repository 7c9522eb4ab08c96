"""Classification batches prepared on the GPU without the host waiting for it.

mmpretrain's ``ClsDataPreprocessor`` makes the host wait for the GPU's whole queue (the
previous training step) up to three times a batch: it copies the labels with a
blocking ``.to(device)``, and Mixup / CutMix index the GPU batch with a CPU
permutation, which PyTorch copies to the GPU the same blocking way. With the training
step captured as a CUDA graph, the host then cannot prepare the next batch while the
GPU runs the step, and the GPU idles while the host does. Here the labels travel
through pinned memory without waiting, the permutations are drawn on the batch's
device, and one-label-per-image batches become one-hot in one kernel instead of one
per image. Outputs are mmpretrain's: on a CPU, bit for bit (same random draws); on a
GPU the permutations come from the GPU's generator, with the same distribution.
"""
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.models.utils.batch_augments import CutMix, Mixup
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.registry import BATCH_AUGMENTS, MODELS
from mmpretrain.structures import DataSample, batch_label_to_onehot, cat_batch_labels
from mmpretrain.structures.utils import tensor_split

from ...private_api import copy_batches_without_waiting


def _permutation(batch: torch.Tensor) -> torch.Tensor:
    return torch.randperm(batch.size(0), device=batch.device)


@BATCH_AUGMENTS.register_module()
class DeviceMixup(Mixup):
    """mmpretrain's ``Mixup``, its permutation drawn on the batch's device."""

    def mix(self, batch_inputs: torch.Tensor,
            batch_scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        lam = np.random.beta(self.alpha, self.alpha)
        index = _permutation(batch_inputs)
        mixed_inputs = lam * batch_inputs + (1 - lam) * batch_inputs[index, :]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index, :]
        return mixed_inputs, mixed_scores


@BATCH_AUGMENTS.register_module()
class DeviceCutMix(CutMix):
    """mmpretrain's ``CutMix``, its permutation drawn on the batch's device."""

    def mix(self, batch_inputs: torch.Tensor,
            batch_scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        lam = np.random.beta(self.alpha, self.alpha)
        index = _permutation(batch_inputs)
        (y1, y2, x1, x2), lam = self.cutmix_bbox_and_lam(batch_inputs.shape[-2:], lam)
        batch_inputs[:, :, y1:y2, x1:x2] = batch_inputs[index, :, y1:y2, x1:x2]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index, :]
        return batch_inputs, mixed_scores


@MODELS.register_module()
class SyncFreeClsDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` (same arguments, same outputs) that never waits for the
    GPU: batches and labels are copied without waiting (pin the loader's memory,
    ``pin_memory=True``, for the copy to overlap); use ``DeviceMixup`` /
    ``DeviceCutMix`` as the batch augments for the same in Mixup and CutMix."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        copy_batches_without_waiting(self)

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = data.get('data_samples')
        if not (samples and isinstance(samples[0], DataSample)
                and 'gt_label' in samples[0] and 'gt_score' not in samples[0]):
            return super().forward(data, training)  # nothing to copy but the inputs
        # The parent's image part, without labels (they follow, here).
        inputs = super().forward(dict(inputs=data['inputs']), training)['inputs']
        labels, splits = cat_batch_labels([s.gt_label for s in samples])
        if labels.device.type == 'cpu' and self.device.type == 'cuda':
            labels = labels.pin_memory()
        labels = labels.to(self.device, non_blocking=True)
        scores = None
        if self.to_onehot:
            num_classes = self.num_classes or samples[0].get('num_classes')
            assert num_classes is not None, \
                'Cannot generate one-hot format labels because not set ' \
                '`num_classes` in `data_preprocessor`.'
            if splits == list(range(1, len(samples))):  # one label per image
                scores = F.one_hot(labels, num_classes)
            else:
                scores = batch_label_to_onehot(labels, splits, num_classes)
            if training and self.batch_augments is not None:
                inputs, scores = self.batch_augments(inputs, scores)
        for sample, label in zip(samples, tensor_split(labels, splits)):
            sample.set_gt_label(label)
        if scores is not None:
            for sample, score in zip(samples, scores):
                sample.set_gt_score(score)
        return dict(inputs=inputs, data_samples=samples)
