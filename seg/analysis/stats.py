"""Statistics of a comparison over seeds: mean, standard deviation, confidence intervals, and the
bootstrap of paired differences.

No paper beyond the textbook ones: Student's t interval of a mean; the percentile bootstrap
(Efron & Tibshirani, An Introduction to the Bootstrap, 1993), here over the validation images,
with the runs of two models paired by seed.

A run's accuracy is recomputed from per-image pixel counts, ``counts[i] = (tp, gt_area, pred_area)``
per class (shape (N_images, 3, C)), exactly as the evaluation computes it: per-class IoU from the
counts summed over the images by the evaluation's own :func:`seg.evaluation.metrics.iou_from_areas`,
mIoU the mean over the classes that have one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from seg.evaluation.metrics import iou_from_areas

__all__ = ['Interval', 'bootstrap_paired_difference', 'iou_from_counts', 'mean_interval', 'miou_from_counts']


@dataclass
class Interval:
    """A point estimate with its spread and a confidence interval.

    Attributes:
        mean: the estimate.
        std: the sample standard deviation (ddof 1) of the values it comes from (NaN for one value).
        low, high: the interval (NaN when it cannot be computed).
        n: how many values (seeds, or bootstrap replicates).
    """

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def contains_zero(self) -> bool:
        """Whether 0 lies in [low, high] (False when the interval is unknown)."""
        return bool(self.low <= 0.0 <= self.high)

    def as_dict(self) -> dict:
        return dict(mean=self.mean, std=self.std, low=self.low, high=self.high, n=self.n)


def mean_interval(values, confidence: float = 0.95) -> Interval:
    """Mean, sample std and the Student-t interval ``mean +- t_(n-1) * std / sqrt(n)`` of ``values``.

    NaN values (a class absent from every image of a run) are left out. With fewer than two values
    the std and the interval are NaN.
    """
    from scipy.stats import t as student_t

    x = np.asarray(list(values), dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, n)
    std = float(x.std(ddof=1))
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-class IoU (NaN where a class has no union) from summed counts: the evaluation's own
    :func:`seg.evaluation.metrics.iou_from_areas`, on (batches of) numpy counts.

    Args:
        counts: (..., 3, C): ``(tp, gt_area, pred_area)`` per class, summed over the images.

    Returns:
        (..., C).
    """
    c = torch.from_numpy(np.asarray(counts, dtype=np.float64))
    return iou_from_areas(c[..., 0, :], c[..., 1, :], c[..., 2, :]).numpy()


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmean`` without the warning for an all-NaN slice (which stays NaN)."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    count = finite.sum(axis=axis)
    total = np.where(finite, x, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def miou_from_counts(per_image: np.ndarray) -> float:
    """mIoU (mean over the classes that have an IoU) of (N, 3, C) per-image counts."""
    return float(_nanmean(iou_from_counts(np.asarray(per_image).sum(axis=0)), axis=-1))


def _resample_indices(n_images: int, replicates: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_images, size=(replicates, n_images))


def bootstrap_paired_difference(model: list[np.ndarray], baseline: list[np.ndarray], replicates: int = 1000,
                                confidence: float = 0.95, seed: int = 0) -> tuple[Interval, list[Interval]]:
    """The difference of mIoU and of each class's IoU, ``model - baseline``, with bootstrap intervals.

    Each replicate draws the validation images with replacement (the same draw for every run), and
    computes, for every seed k, the metric of the model's run k minus that of the baseline's run k
    on the drawn images, then averages over the seeds. The interval is the percentile interval of
    the replicates; the point estimate is the same average on all the images.

    Args:
        model: per seed, the model's (N, 3, C) per-image counts.
        baseline: per seed (same seeds, same order), the baseline's counts on the same N images.
        replicates: number of bootstrap replicates.
        confidence: the interval's coverage.
        seed: seed of the resampling.

    Returns:
        ``(mIoU difference, [IoU difference of class c for c in range(C)])``; values are fractions.

    Raises:
        ValueError: no runs, unequal numbers of runs, or counts of different shapes.
    """
    if not model or len(model) != len(baseline):
        raise ValueError(f'need the same number (>= 1) of runs of both models, got {len(model)} and {len(baseline)}')
    m = np.stack([np.asarray(c, dtype=np.float64) for c in model])  # [S, N, 3, C]
    b = np.stack([np.asarray(c, dtype=np.float64) for c in baseline])  # [S, N, 3, C]
    if m.shape != b.shape or m.ndim != 4 or m.shape[2] != 3:
        raise ValueError(f'counts must be (N, 3, C) per run and equal for both models, got {m.shape[1:]} and '
                         f'{b.shape[1:]}')
    n_images = m.shape[1]
    idx = _resample_indices(n_images, replicates, seed)  # [R, N]

    def metric(counts: np.ndarray, take: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        # counts [S, N, 3, C] -> per seed (and replicate) IoU [.., C] and mIoU [..]
        summed = counts.sum(axis=1) if take is None else counts[:, take].sum(axis=2)  # [S, 3, C] / [S, R, 3, C]
        iou = iou_from_counts(summed)
        return iou, _nanmean(iou, axis=-1)

    iou_m, miou_m = metric(m, None)  # [S, C], [S]
    iou_b, miou_b = metric(b, None)
    rep_iou_m, rep_miou_m = metric(m, idx)  # [S, R, C], [S, R]
    rep_iou_b, rep_miou_b = metric(b, idx)
    alpha = (1 - confidence) / 2

    def interval(point: np.ndarray, reps: np.ndarray) -> Interval:
        # point [S] per seed; reps [S, R]: averaged over the seeds
        est = float(_nanmean(point, axis=0))
        per_rep = _nanmean(reps, axis=0)  # [R]
        per_rep = per_rep[np.isfinite(per_rep)]
        if not np.isfinite(est) or per_rep.size == 0:
            return Interval(est, math.nan, math.nan, math.nan, int(per_rep.size))
        low, high = np.quantile(per_rep, [alpha, 1 - alpha])
        return Interval(est, float(per_rep.std(ddof=1)) if per_rep.size > 1 else math.nan, float(low), float(high),
                        int(per_rep.size))

    miou = interval(miou_m - miou_b, rep_miou_m - rep_miou_b)
    classes = [interval(iou_m[:, c] - iou_b[:, c], rep_iou_m[:, :, c] - rep_iou_b[:, :, c])
               for c in range(m.shape[-1])]
    return miou, classes
