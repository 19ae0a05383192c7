"""Where a model is right, beyond mIoU: boundaries and objects by size, accumulated per image.

:class:`RegionMetrics` runs the per-image count functions of :mod:`seg.evaluation.boundary` and
:mod:`seg.evaluation.objects` on each (prediction, ground truth) pair of an evaluation and keeps the
counts of every image, so that a comparison's paired bootstrap resamples them exactly as it resamples
the mIoU's (:func:`seg.analysis.stats.paired_bootstrap`). ``summary`` pools them. The metrics and
their defaults are defined in ``docs/metrics.md``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .boundary import boundary_counts, boundary_iou_from_counts, trimap_counts
from .objects import BUCKETS, object_size_counts, recall_from_counts

__all__ = ['REGION_METRICS', 'TRIMAP_WIDTHS', 'RegionMetrics', 'mean_pair_iou', 'size_recall', 'trimap_accuracy']

REGION_METRICS = ('boundary', 'objects')
"""``boundary``: Boundary IoU (d = 2% of the diagonal) and trimap accuracy; ``objects``: recall and IoU of
ground-truth objects by size bucket."""

TRIMAP_WIDTHS = (1, 2, 4, 8, 16)


def mean_pair_iou(counts: np.ndarray) -> np.ndarray:
    """Mean over classes of ``intersection / union`` of pooled ``[..., 2, C]`` counts (NaN classes left out),
    percent: the mean Boundary IoU of boundary counts, the mean IoU within a size bucket of size counts.
    NaN where no class has a pixel (a size bucket with no object): not measured, rather than 0."""
    iou = boundary_iou_from_counts(counts)  # [..., C]
    with np.errstate(invalid='ignore'):
        valid = ~np.isnan(iou)
        n = valid.sum(-1)
        return np.where(n > 0, 100.0 * np.where(valid, iou, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def size_recall(counts: np.ndarray) -> np.ndarray:
    """Recall over all classes per size bucket of pooled ``[..., 3, 2, C]`` object counts, percent [..., 3]."""
    c = np.asarray(counts, dtype=np.float64).sum(-1)  # [..., 3, 2]
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(c[..., 1] > 0, 100.0 * c[..., 0] / c[..., 1], np.nan)


def trimap_accuracy(counts: np.ndarray) -> np.ndarray:
    """Pixel accuracy per band width of pooled ``[..., W, 2]`` trimap counts, percent."""
    c = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(c[..., 1] > 0, 100.0 * c[..., 0] / c[..., 1], np.nan)


class RegionMetrics:
    """Per-image counts of the region metrics named in ``metrics`` (any of :data:`REGION_METRICS`).

    Args:
        metrics: which to compute.
        num_classes: C.
        ignore_index: the ground truth's ignore label.

    Raises:
        ValueError: an unknown metric name.
    """

    def __init__(self, metrics: Sequence[str], num_classes: int, ignore_index: int = 255) -> None:
        unknown = sorted(set(metrics) - set(REGION_METRICS))
        if unknown:
            raise ValueError(f'unknown metric(s) {unknown}; valid: {", ".join(REGION_METRICS)} (mIoU is always computed)')
        self.metrics = tuple(metrics)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.counts: dict[str, list[np.ndarray]] = {k: [] for k in self.keys()}

    def keys(self) -> list[str]:
        """The per-image count arrays kept: ``boundary`` [2, C], ``trimap`` [W, 2], ``objects`` and
        ``size_iou`` [3, 2, C]."""
        return (['boundary', 'trimap'] if 'boundary' in self.metrics else []) + \
            (['objects', 'size_iou'] if 'objects' in self.metrics else [])

    def process(self, pred, gt) -> None:
        """Count one image: ``pred`` and ``gt`` [H, W] integer label maps."""
        pred = np.asarray(pred.cpu() if hasattr(pred, 'cpu') else pred)
        gt = np.asarray(gt.cpu() if hasattr(gt, 'cpu') else gt)
        if 'boundary' in self.metrics:
            self.counts['boundary'].append(boundary_counts(pred, gt, self.num_classes, self.ignore_index))
            self.counts['trimap'].append(trimap_counts(pred, gt, TRIMAP_WIDTHS, self.ignore_index))
        if 'objects' in self.metrics:
            found, size = object_size_counts(pred, gt, self.num_classes, self.ignore_index)
            self.counts['objects'].append(found)
            self.counts['size_iou'].append(size)

    def per_image(self) -> dict[str, list]:
        """Every image's counts, as lists (for ``metrics.json``)."""
        return {k: np.stack(v).tolist() if v else [] for k, v in self.counts.items()}

    def summary(self, classes: Sequence[str]) -> dict[str, float]:
        """The pooled metrics in percent: ``bIoU`` (mean Boundary IoU) and ``bIoU.<class>``,
        ``trimap@<w>px``, ``recall.<bucket>`` and ``recall.<bucket>.<class>``, ``sizeIoU.<bucket>``."""
        out: dict[str, float] = {}
        if self.counts.get('boundary'):
            pooled = np.sum(self.counts['boundary'], axis=0)
            out['bIoU'] = float(mean_pair_iou(pooled))
            for name, v in zip(classes, 100.0 * boundary_iou_from_counts(pooled)):
                out[f'bIoU.{name}'] = float(v)
            for w, v in zip(TRIMAP_WIDTHS, trimap_accuracy(np.sum(self.counts['trimap'], axis=0))):
                out[f'trimap@{w}px'] = float(v)
        if self.counts.get('objects'):
            pooled = np.sum(self.counts['objects'], axis=0)
            per_class = 100.0 * recall_from_counts(pooled)  # [3, C]
            for b, bucket in enumerate(BUCKETS):
                out[f'recall.{bucket}'] = float(size_recall(pooled)[b])
                for name, v in zip(classes, per_class[b]):
                    out[f'recall.{bucket}.{name}'] = float(v)
            size = np.sum(self.counts['size_iou'], axis=0)  # [3, 2, C]
            for b, bucket in enumerate(BUCKETS):
                out[f'sizeIoU.{bucket}'] = float(mean_pair_iou(size[b]))
        return out
