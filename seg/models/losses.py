"""Segmentation losses: pixel-wise cross-entropy and its OHEM variant.

OHEM: Training Region-based Object Detectors with Online Hard Example Mining (Shrivastava et al.,
CVPR 2016), https://arxiv.org/abs/1604.03540 -- in the pixel form of PSPNet / CCNet's code
(keep pixels whose probability of the true class is below ``thresh``, at least ``min_kept`` of them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.registry import MODELS


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over the pixels that are not ``ignore_index``."""

    def __init__(self, ignore_index: int = 255, class_weight: list[float] | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer('class_weight', torch.tensor(class_weight, dtype=torch.float32)
                             if class_weight is not None else None, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits (B, K, H, W), target (B, H, W) int64 -> scalar."""
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0  # keeps the graph when a crop is entirely ignored
        weight = self.class_weight.to(logits.dtype) if self.class_weight is not None else None
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)


@MODELS.register_module()
class OhemCrossEntropyLoss(nn.Module):
    """Cross-entropy on the hard pixels only.

    A pixel is hard when the softmax probability of its true class is below ``thresh``; if fewer than
    ``min_kept`` pixels are hard, the ``min_kept`` lowest-probability pixels are kept instead.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 100000, ignore_index: int = 255) -> None:
        super().__init__()
        if not 0 < thresh <= 1:
            raise ValueError(f'OHEM thresh must be in (0, 1], got {thresh}')
        if min_kept < 1:
            raise ValueError(f'OHEM min_kept must be >= 1, got {min_kept}')
        self.thresh, self.min_kept, self.ignore_index = thresh, min_kept, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index  # [B, H, W]
        if not valid.any():
            return logits.sum() * 0.0
        with torch.no_grad():
            prob = logits.detach().float().softmax(dim=1)  # [B, K, H, W]
            safe_target = target.masked_fill(~valid, 0)
            true_prob = prob.gather(1, safe_target.unsqueeze(1)).squeeze(1)  # [B, H, W]
            true_prob = true_prob.masked_fill(~valid, float('inf'))
            flat = true_prob.flatten()
            num_valid = int(valid.sum())
            threshold = self.thresh
            if self.min_kept > 0:
                kth = min(self.min_kept, num_valid)
                kth_value = flat.kthvalue(kth).values.item()
                threshold = max(threshold, kth_value)
            keep = (true_prob <= threshold) & valid
        loss = F.cross_entropy(logits, target.masked_fill(~keep, self.ignore_index),
                               ignore_index=self.ignore_index, reduction='sum')
        return loss / keep.sum().clamp(min=1)
