"""Segmentation losses: pixel-wise cross-entropy, its OHEM variant, and segmentation-models-pytorch's
Dice, Focal and Lovász losses.

OHEM: Training Region-based Object Detectors with Online Hard Example Mining (Shrivastava et al.,
CVPR 2016), https://arxiv.org/abs/1604.03540 -- in the pixel form of PSPNet / CCNet's code
(keep pixels whose probability of the true class is below ``thresh``, at least ``min_kept`` of them).
V-Net (Milletari et al., 3DV 2016), https://arxiv.org/abs/1606.04797 -- Dice; Focal Loss for Dense
Object Detection (Lin et al., ICCV 2017), https://arxiv.org/abs/1708.02002; The Lovász-Softmax loss
(Berman et al., CVPR 2018), https://arxiv.org/abs/1705.08790 -- computed by
``segmentation_models_pytorch.losses`` in its multiclass mode.

Every loss takes ``(logits (B, K, H, W), target (B, H, W) int64)``, skips ``ignore_index`` pixels,
scales its value by ``loss_weight`` and has a ``short_name`` for the log (``loss_out_dice``).
The segmentor chooses losses per output key (``model.losses``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.registry import MODELS


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over the pixels that are not ``ignore_index``."""

    short_name = 'ce'

    def __init__(self, ignore_index: int = 255, class_weight: list[float] | None = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.loss_weight = float(loss_weight)
        self.register_buffer('class_weight', torch.tensor(class_weight, dtype=torch.float32)
                             if class_weight is not None else None, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits (B, K, H, W), target (B, H, W) int64 -> scalar."""
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0  # keeps the graph when a crop is entirely ignored
        weight = self.class_weight.to(logits.dtype) if self.class_weight is not None else None
        return self.loss_weight * F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)


@MODELS.register_module()
class OhemCrossEntropyLoss(nn.Module):
    """Cross-entropy on the hard pixels only.

    A pixel is hard when the softmax probability of its true class is below ``thresh``; if fewer than
    ``min_kept`` pixels are hard, the ``min_kept`` lowest-probability pixels are kept instead.
    """

    short_name = 'ohem'

    def __init__(self, thresh: float = 0.7, min_kept: int = 100000, ignore_index: int = 255,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
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
        return self.loss_weight * loss / keep.sum().clamp(min=1)


class _SMPLoss(nn.Module):
    """A multiclass loss of ``segmentation_models_pytorch.losses`` with this module's conventions."""

    smp_name = ''

    def __init__(self, ignore_index: int, loss_weight: float, **options) -> None:
        super().__init__()
        from segmentation_models_pytorch import losses as smp_losses

        self.ignore_index = ignore_index
        self.loss_weight = float(loss_weight)
        self.inner = getattr(smp_losses, self.smp_name)(mode='multiclass', ignore_index=ignore_index, **options)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits (B, K, H, W), target (B, H, W) int64 -> scalar."""
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        return self.loss_weight * self.inner(logits, target)


@MODELS.register_module()
class DiceLoss(_SMPLoss):
    """Soft Dice loss over the classes (smp's ``DiceLoss``, multiclass mode).

    Args:
        ignore_index: label of pixels that count for nothing.
        smooth: added to numerator and denominator.
        log_loss: ``-log(dice)`` instead of ``1 - dice``.
        loss_weight: factor on the loss.
    """

    short_name = 'dice'
    smp_name = 'DiceLoss'

    def __init__(self, ignore_index: int = 255, smooth: float = 0.0, log_loss: bool = False,
                 loss_weight: float = 1.0) -> None:
        super().__init__(ignore_index, loss_weight, smooth=smooth, log_loss=log_loss)


@MODELS.register_module()
class FocalLoss(_SMPLoss):
    """Focal loss ``-(1 - p_t)^gamma log(p_t)`` (smp's ``FocalLoss``, multiclass mode: one binary focal
    term per class, summed).

    Args:
        ignore_index: label of pixels that count for nothing.
        gamma: focusing parameter.
        alpha: weight of the positive term (``None``: none).
        loss_weight: factor on the loss.
    """

    short_name = 'focal'
    smp_name = 'FocalLoss'

    def __init__(self, ignore_index: int = 255, gamma: float = 2.0, alpha: float | None = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__(ignore_index, loss_weight, gamma=gamma, alpha=alpha)


@MODELS.register_module()
class LovaszLoss(_SMPLoss):
    """Lovász-Softmax loss, a convex surrogate of the per-class IoU (smp's ``LovaszLoss``, multiclass mode).

    Args:
        ignore_index: label of pixels that count for nothing.
        per_image: average the loss per image instead of over the batch.
        loss_weight: factor on the loss.
    """

    short_name = 'lovasz'
    smp_name = 'LovaszLoss'

    def __init__(self, ignore_index: int = 255, per_image: bool = False, loss_weight: float = 1.0) -> None:
        super().__init__(ignore_index, loss_weight, per_image=per_image)
