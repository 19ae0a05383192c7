"""Confusion-matrix metrics of semantic segmentation: IoU, per-class and overall accuracy.

The definitions follow the PASCAL VOC challenge (The PASCAL Visual Object Classes Challenge: A
Retrospective, Everingham et al., IJCV 2015, https://doi.org/10.1007/s11263-014-0733-5) and the
mmsegmentation conventions: IoU_c = TP / (TP + FP + FN), Acc_c = TP / (TP + FN), aAcc = sum TP /
number of evaluated pixels, and mIoU / mAcc the mean over classes that skips NaN (a class absent
from both ground truth and prediction has no IoU; a class absent from the ground truth has no
accuracy).

All functions work on CPU or CUDA tensors; results stay on the input's device.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def _bad_values(values: Tensor, limit: int = 10) -> list[int]:
    """Distinct offending values, smallest first, at most ``limit`` of them."""
    return torch.unique(values).cpu()[:limit].tolist()


def confusion_matrix(pred: Tensor, gt: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Count (ground truth, prediction) pairs over the pixels whose ground truth is not ignored.

    Args:
        pred: integer class indices, any shape (usually [H, W] or [B, H, W]).
        gt: integer class indices of the same shape; ``ignore_index`` marks unlabelled pixels.
        num_classes: number of classes C.
        ignore_index: ground-truth value of the pixels that are not evaluated.

    Returns:
        int64 [C, C] on the inputs' device: entry (i, j) counts pixels of ground truth i
        predicted as j (rows = ground truth, columns = prediction).

    Raises:
        ValueError: on mismatched shapes, non-integer tensors, ``num_classes < 1``, a ground truth
            value outside [0, C) that is not ``ignore_index``, or a prediction outside [0, C) on
            an evaluated pixel (the offending values are named).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
    if not isinstance(pred, Tensor) or not isinstance(gt, Tensor):
        raise ValueError(f'pred and gt must be torch tensors, got {type(pred).__name__} and '
                         f'{type(gt).__name__}')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must have the same shape')
    for name, t in (('pred', pred), ('gt', gt)):
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f'{name} must hold integer class indices, got dtype {t.dtype} '
                             f'(take the argmax of the logits first)')
    n = num_classes
    pred = pred.reshape(-1).long()  # [P]
    gt = gt.reshape(-1).long()  # [P]
    keep = gt != ignore_index  # [P]
    bad = keep & ((gt < 0) | (gt >= n) | (pred < 0) | (pred >= n))  # [P]
    if bool(bad.any()):  # one host sync on the happy path; details only on error
        bad_gt = keep & ((gt < 0) | (gt >= n))
        if bool(bad_gt.any()):
            raise ValueError(f'gt has values {_bad_values(gt[bad_gt])} outside [0, {n}) that are not '
                             f'ignore_index {ignore_index}')
        raise ValueError(f'pred has values {_bad_values(pred[bad])} outside [0, {n}) on pixels '
                         f'whose gt is not ignore_index {ignore_index}')
    # Ignored pixels go to one extra bin that is dropped.
    index = torch.where(keep, gt * n + pred, torch.full_like(gt, n * n))  # [P]
    counts = torch.bincount(index, minlength=n * n + 1)[:n * n]  # [C * C]
    return counts.reshape(n, n)  # [C, C]


def iou_from_areas(tp, gt_area, pred_area) -> Tensor:
    """IoU ``tp / (gt_area + pred_area - tp)`` per class, NaN where the union is 0 (a class absent from
    both ground truth and prediction has no IoU).

    The one definition of IoU from pixel counts in ``seg``: :func:`metrics_from_areas` (the
    evaluation) and :func:`seg.analysis.stats.iou_from_counts` (the bootstrap over images) use it.
    No validation here (:func:`metrics_from_areas` validates its inputs).

    Args:
        tp, gt_area, pred_area: counts of any one (broadcastable) shape, class last; tensors, arrays
            or numbers.

    Returns:
        float64 tensor of the broadcast shape, on the inputs' device.
    """
    tp, gt_area, pred_area = (torch.as_tensor(t).to(torch.float64) for t in (tp, gt_area, pred_area))
    union = gt_area + pred_area - tp
    has_union = union > 0
    # Divide by 1 where there is no union: no 0/0 warning and no value of it survives the where.
    return torch.where(has_union, tp / torch.where(has_union, union, torch.ones_like(union)),
                       torch.full_like(union, float('nan')))


def metrics_from_areas(tp: Tensor, gt_area: Tensor, pred_area: Tensor) -> dict:
    """IoU and accuracy from per-class pixel counts.

    Args:
        tp: [C] pixels of class c predicted as c.
        gt_area: [C] ground-truth pixels of class c.
        pred_area: [C] pixels predicted as class c (on evaluated pixels).

    Returns:
        The dict of :func:`metrics_from_confusion`.

    Raises:
        ValueError: on shapes that are not one [C] vector each, or counts that are negative,
            not finite, or inconsistent (``tp`` above either area).
    """
    tp, gt_area, pred_area = (torch.as_tensor(t).to(torch.float64) for t in (tp, gt_area, pred_area))
    if tp.dim() != 1 or tp.numel() == 0 or gt_area.shape != tp.shape or pred_area.shape != tp.shape:
        raise ValueError(f'tp, gt_area and pred_area must be [C] vectors of one length, got '
                         f'{tuple(tp.shape)}, {tuple(gt_area.shape)} and {tuple(pred_area.shape)}')
    counts = torch.stack([tp, gt_area, pred_area])  # [3, C]
    if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
        raise ValueError('pixel counts must be non-negative and finite')
    if bool((tp > gt_area).any()) or bool((tp > pred_area).any()):
        raise ValueError('tp cannot exceed gt_area or pred_area')
    iou = iou_from_areas(tp, gt_area, pred_area)  # [C]
    nan = torch.full_like(tp, float('nan'))
    acc = torch.where(gt_area > 0, tp / gt_area.clamp(min=1), nan)  # [C]
    total = gt_area.sum()
    a_acc = (tp.sum() / total).item() if total > 0 else float('nan')
    return {
        'IoU': iou,
        'Acc': acc,
        'aAcc': a_acc,
        'mIoU': torch.nanmean(iou).item(),
        'mAcc': torch.nanmean(acc).item(),
    }


def metrics_from_confusion(cm: Tensor) -> dict:
    """IoU and accuracy from a confusion matrix (rows = ground truth, columns = prediction).

    Args:
        cm: [C, C] non-negative counts.

    Returns:
        dict with

        - ``IoU``: float64 [C]; NaN for a class absent from both ground truth and prediction.
        - ``Acc``: float64 [C]; NaN for a class with no ground-truth pixel.
        - ``aAcc``: float, correct pixels over all counted pixels (NaN if nothing was counted).
        - ``mIoU``, ``mAcc``: floats, means over the classes that are not NaN (NaN if none is).

        All values are fractions in [0, 1]; the tensors are on ``cm``'s device.

    Raises:
        ValueError: if ``cm`` is not a square 2-D matrix of non-negative counts.
    """
    if not isinstance(cm, Tensor) or cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        shape = tuple(cm.shape) if isinstance(cm, Tensor) else type(cm).__name__
        raise ValueError(f'confusion matrix must be a square [C, C] tensor, got {shape}')
    cmf = cm.to(torch.float64)
    if bool((cmf < 0).any()) or not bool(torch.isfinite(cmf).all()):
        raise ValueError('confusion matrix must hold non-negative finite counts')
    return metrics_from_areas(cmf.diagonal(), cmf.sum(dim=1), cmf.sum(dim=0))


def _percent(value: float) -> str:
    return 'nan' if math.isnan(value) else f'{100.0 * value:.2f}'


def format_table(metrics: dict, class_names: Sequence[str]) -> str:
    """A plain-text table of per-class IoU and Acc (percent, 2 decimals) and a summary line.

    Args:
        metrics: output of :func:`metrics_from_confusion`.
        class_names: one name per class.

    Returns:
        The table, columns aligned, lines joined by newlines, e.g.::

            Class     IoU     Acc
            ---------------------
            road    97.94   98.91
            car       nan     nan
            ---------------------
            aAcc: 95.12  mIoU: 79.03  mAcc: 86.40

    Raises:
        ValueError: if keys are missing or the number of names differs from the number of classes.
    """
    missing = [k for k in ('IoU', 'Acc', 'aAcc', 'mIoU', 'mAcc') if k not in metrics]
    if missing:
        raise ValueError(f'metrics lacks keys {missing}; pass the output of metrics_from_confusion')
    iou = [float(v) for v in torch.as_tensor(metrics['IoU']).reshape(-1).tolist()]
    acc = [float(v) for v in torch.as_tensor(metrics['Acc']).reshape(-1).tolist()]
    names = [str(n) for n in class_names]
    if len(names) != len(iou) or len(acc) != len(iou):
        raise ValueError(f'{len(names)} class names for {len(iou)} IoU and {len(acc)} Acc values')
    name_w = max([len('Class')] + [len(n) for n in names])
    num_w = 7  # '100.00' plus a space
    header = f'{"Class":<{name_w}}{"IoU":>{num_w}}{"Acc":>{num_w}}'
    rule = '-' * len(header)
    rows = [f'{n:<{name_w}}{_percent(i):>{num_w}}{_percent(a):>{num_w}}'
            for n, i, a in zip(names, iou, acc)]
    summary = '  '.join(f'{k}: {_percent(float(metrics[k]))}' for k in ('aAcc', 'mIoU', 'mAcc'))
    return '\n'.join([header, rule, *rows, rule, summary])
