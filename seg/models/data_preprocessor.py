"""Batching, normalisation and padding of samples, on the model's device (mmengine data preprocessor)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from seg.registry import MODELS


@MODELS.register_module()
class SegDataPreprocessor(BaseDataPreprocessor):
    """uint8 RGB (3, H, W) images -> normalised float batch, labels padded with ``seg_pad_val``.

    Images of different sizes in one batch are padded bottom/right to the largest (and to a
    multiple of ``size_divisor`` when given); each sample's ``img_shape`` keeps its unpadded size.
    With ``channels_last`` (set by the runner when the run uses that memory format, not a config
    option) the batch comes out in NHWC memory order.
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), pad_val: float = 0.0,
                 seg_pad_val: int = 255, size_divisor: int | None = None) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False)
        self.pad_val, self.seg_pad_val, self.size_divisor = pad_val, seg_pad_val, size_divisor
        self.channels_last = False

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs: list[Tensor] = list(data['inputs'])
        samples: list[dict] = [dict(s) for s in data.get('data_samples') or [{} for _ in inputs]]
        h = max(img.shape[-2] for img in inputs)
        w = max(img.shape[-1] for img in inputs)
        if self.size_divisor:
            h = -(-h // self.size_divisor) * self.size_divisor
            w = -(-w // self.size_divisor) * self.size_divisor
        batch = []
        for img, sample in zip(inputs, samples):
            img = (img.float() - self.mean) / self.std
            sample.setdefault('img_shape', tuple(img.shape[-2:]))
            sample['pad_shape'] = (h, w)
            batch.append(F.pad(img, (0, w - img.shape[-1], 0, h - img.shape[-2]), value=self.pad_val))
            if training and 'gt_sem_seg' in sample:
                gt = sample['gt_sem_seg']
                sample['gt_sem_seg'] = F.pad(gt, (0, w - gt.shape[-1], 0, h - gt.shape[-2]),
                                             value=self.seg_pad_val)
        inputs = torch.stack(batch)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return dict(inputs=inputs, data_samples=samples)
