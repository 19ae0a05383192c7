"""mmengine metric for semantic segmentation: aAcc, mIoU, mAcc and per-class IoU / Acc.

Definitions as in :mod:`seg.evaluation.metrics` (PASCAL VOC IoU, mmsegmentation's nan-mean
over classes); reported in percent with 2 decimals, as mmsegmentation reports them.

Each processed sample leaves one small CPU tensor in ``self.results`` (its confusion matrix
in sparse COO form, or its per-class pixel counts), so mmengine can gather them across
distributed ranks and drop the padding samples by count.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from torch import Tensor

from seg.registry import METRICS

from .metrics import confusion_matrix, format_table, metrics_from_areas, metrics_from_confusion


def _label_map(sample: Any, key: str) -> Tensor:
    """The [H, W] label tensor under ``key`` of one data sample.

    Accepts a dict or an object with that attribute; the value may be a tensor, an mmengine
    ``PixelData`` or the dict mmengine makes of one (``{'data': tensor}``), [H, W] or [1, H, W].
    """
    if isinstance(sample, Mapping):
        if key not in sample:
            raise ValueError(f'data sample lacks key {key!r}; it has keys {sorted(map(str, sample))}')
        value = sample[key]
    elif hasattr(sample, key):
        value = getattr(sample, key)
    else:
        raise ValueError(f'data sample of type {type(sample).__name__} has no {key!r}')
    if isinstance(value, Mapping) and 'data' in value:
        value = value['data']
    elif not isinstance(value, Tensor) and isinstance(getattr(value, 'data', None), Tensor):
        value = value.data
    if not isinstance(value, Tensor):
        raise ValueError(f'{key!r} must be an integer tensor [H, W], got {type(value).__name__}')
    if value.dim() == 3 and value.shape[0] == 1:
        value = value[0]  # [H, W]
    if value.dim() != 2:
        raise ValueError(f'{key!r} must be [H, W] (or [1, H, W]), got shape {tuple(value.shape)}')
    return value


def per_sample_counts(results: list[Tensor], confusion: bool) -> Tensor:
    """int64 [N, 3, C] ``(tp, gt_area, pred_area)`` from what :meth:`IoUMetric.process` kept per sample
    (a [C, C] confusion matrix each when ``confusion``, else the [3, C] counts themselves)."""
    rows = []
    for r in results:
        r = r.to_dense() if r.is_sparse else r
        rows.append(torch.stack([r.diagonal(), r.sum(1), r.sum(0)]) if confusion else r)
    return torch.stack(rows).to(torch.int64) if rows else torch.zeros((0, 3, 0), dtype=torch.int64)


@METRICS.register_module()
class IoUMetric(BaseMetric):
    """Confusion-matrix segmentation metric for mmengine's evaluator.

    Args:
        ignore_index: ground-truth value of pixels that are not evaluated.
        num_classes: number of classes; if None, the length of ``class_names`` or of
            ``dataset_meta['classes']`` (which mmengine's Runner sets from the dataset).
        collect_device: 'cpu' or 'gpu', where mmengine gathers results across ranks.
        prefix: prefix of the returned keys ('<prefix>/mIoU'); none by default.
        class_names: names for the table and the per-class keys; if None, taken from
            ``dataset_meta['classes']``, else the class indices.
        collect_confusion: keep each sample's full confusion matrix (and ``last_confusion``);
            if False, keep only per-class pixel counts ([3, C] per sample), which is all the
            metrics need, and leave ``last_confusion`` None.

    Attributes:
        last_confusion: int64 [C, C] CPU tensor summed over the last evaluation (rows = ground
            truth, columns = prediction), or None.
        last_metrics: the last evaluation's :func:`metrics_from_confusion` dict (fractions in
            [0, 1], ``IoU`` / ``Acc`` as float64 [C] CPU tensors) plus ``classes``, or None.
        last_skipped: the files the last evaluation left out because they could not be read
            (the dataset's ``on_bad_file='skip'``), ``[{'skipped': path, 'error': message}]``.
        last_per_image: int64 [N, 3, C] ``(tp, gt_area, pred_area)`` of each evaluated sample of the last
            evaluation, in order (what a comparison's paired bootstrap resamples), or None.
    """

    default_prefix = ''  # no prefix, and no warning from BaseMetric about a missing one

    def __init__(self, ignore_index: int = 255, num_classes: int | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None, class_names: Sequence[str] | None = None,
                 collect_confusion: bool = True) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise ValueError(f'num_classes must be a positive int or None, got {num_classes!r}')
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if num_classes is not None and len(class_names) != num_classes:
                raise ValueError(f'{len(class_names)} class_names given for num_classes={num_classes}')
        self.ignore_index = ignore_index
        self._num_classes = num_classes
        self._class_names = class_names
        self.collect_confusion = bool(collect_confusion)
        self.last_confusion: Tensor | None = None
        self.last_metrics: dict | None = None
        self.last_skipped: list[dict] = []
        self.last_per_image: Tensor | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes, from the constructor or the dataset meta."""
        meta_classes = (self.dataset_meta or {}).get('classes')
        n = self._num_classes
        if n is None and self._class_names is not None:
            n = len(self._class_names)
        if n is None:
            if meta_classes is None:
                raise ValueError("IoUMetric does not know num_classes: pass num_classes or class_names, "
                                 "or set dataset_meta = dict(classes=...)")
            return len(meta_classes)
        if meta_classes is not None and len(meta_classes) != n:
            raise ValueError(f"IoUMetric has num_classes={n} but dataset_meta['classes'] lists "
                             f'{len(meta_classes)} classes')
        return n

    @property
    def class_names(self) -> list[str]:
        """Class names from the constructor, else the dataset meta, else the indices."""
        if self._class_names is not None:
            names = list(self._class_names)
        elif (self.dataset_meta or {}).get('classes') is not None:
            names = [str(c) for c in self.dataset_meta['classes']]
        else:
            names = [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f'{len(names)} class names for {self.num_classes} classes')
        return names

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Count one batch: one CPU tensor per sample goes to ``self.results``.

        Args:
            data_batch: the dataloader batch; its ``skipped`` entries (unreadable files, see
                :func:`seg.datasets.seg_collate`) are kept as ``{'skipped': path, 'error': ...}`` results,
                so that they are gathered from every rank and named, never counted.
            data_samples: per sample, a dict (or object) with ``pred_sem_seg`` and
                ``gt_sem_seg``: int64 [H, W] tensors of the same size.
        """
        if isinstance(data_batch, Mapping):
            self.results.extend(dict(entry) for entry in data_batch.get('skipped') or [])
        n = self.num_classes
        for sample in data_samples:
            pred = _label_map(sample, 'pred_sem_seg')
            gt = _label_map(sample, 'gt_sem_seg').to(pred.device)
            cm = confusion_matrix(pred, gt, n, self.ignore_index).cpu()  # [C, C]
            if self.collect_confusion:
                self.results.append(cm.to_sparse())  # a few nonzeros of C * C
            else:
                self.results.append(torch.stack([cm.diagonal(), cm.sum(1), cm.sum(0)]))  # [3, C]

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum the per-sample counts, log the per-class table and return percentages.

        Args:
            results: the per-sample tensors :meth:`process` stored, from every rank.

        Returns:
            ``aAcc``, ``mIoU``, ``mAcc`` and ``IoU.<class>``, ``Acc.<class>`` for every class, in
            percent rounded to 2 decimals (NaN for a class without IoU / Acc).

        Raises:
            ValueError: if ``results`` is empty or holds tensors of the wrong size.
        """
        self.last_skipped = [r for r in results if isinstance(r, Mapping)]
        results = [r for r in results if not isinstance(r, Mapping)]
        if self.last_skipped:
            print_log(f'left out {len(self.last_skipped)} unreadable file(s) (on_bad_file=skip): '
                      + ', '.join(r['skipped'] for r in self.last_skipped), logger=MMLogger.get_current_instance(),
                      level=30)
        if not results:
            raise ValueError('IoUMetric got no results: process() was never called with samples')
        n = self.num_classes
        names = self.class_names
        keys = [name.strip() for name in names]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f'class names must be unique to name the per-class metrics, '
                             f'got duplicates {dupes}')
        self.last_per_image = per_sample_counts(results, self.collect_confusion)
        if self.collect_confusion:
            total = torch.zeros((n, n), dtype=torch.int64)
            for r in results:
                r = r.to_dense() if r.is_sparse else r
                if r.shape != (n, n):
                    raise ValueError(f'IoUMetric result of shape {tuple(r.shape)}, expected a '
                                     f'[{n}, {n}] confusion matrix')
                total += r.cpu().to(torch.int64)
            self.last_confusion = total
            metrics = metrics_from_confusion(total)
        else:
            total = torch.zeros((3, n), dtype=torch.int64)
            for r in results:
                if r.shape != (3, n):
                    raise ValueError(f'IoUMetric result of shape {tuple(r.shape)}, expected [3, {n}] '
                                     f'per-class counts')
                total += r.cpu().to(torch.int64)
            self.last_confusion = None
            metrics = metrics_from_areas(total[0], total[1], total[2])
        self.last_metrics = dict(metrics, classes=names)

        logger = MMLogger.get_current_instance()
        print_log('per class results:\n' + format_table(metrics, names), logger=logger)

        def percent(v: float) -> float:
            return v if math.isnan(v) else round(100.0 * v, 2)

        out = {k: percent(metrics[k]) for k in ('aAcc', 'mIoU', 'mAcc')}
        for key, iou, acc in zip(keys, metrics['IoU'].tolist(), metrics['Acc'].tolist()):
            out[f'IoU.{key}'] = percent(iou)
            out[f'Acc.{key}'] = percent(acc)
        return out
