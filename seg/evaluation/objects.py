"""Accuracy by object size: how many ground-truth objects a segmentation finds, and its IoU on them.

Objects. The ground-truth objects of class c are the connected components (8-connectivity) of c's
ground-truth mask; ignored pixels belong to no mask, so an object cut in two by an ignored strip is
two objects, and two touching objects of different classes are two objects.

Found. An object is found when at least half of its pixels are predicted as its class
(``2 * hits >= area``: exactly 50% is found).

Size buckets, by the object's pixel area A relative to the image area H * W (every pixel, ignored
ones included), with the default ``thresholds=(0.001, 0.01)``:

- small: A < 0.1% of the image (under 2,097 pixels at 1024 x 2048, about 46 x 46),
- medium: 0.1% <= A < 1%,
- large: A >= 1% of the image (20,972 pixels and more at 1024 x 2048, about 145 x 145).

Size IoU. For bucket b and class c, R is the union of the ground-truth objects of c in b. The
intersection is the pixels of R predicted as c. The union is R plus the false positives of c
attributed to b: every pixel predicted as c whose ground truth is another (non-ignored) class goes to
the bucket of the nearest ground-truth object of c (Euclidean distance, OpenCV's 5x5 chamfer
approximation; a tie goes to one of the nearest). So the buckets partition the plain IoU's counts:
in an image where c has ground truth, the intersections of the three buckets add up to c's true
positives and the unions to c's plain union. False positives of c in an image without ground truth
of c go to no bucket (they lower only the plain IoU).

The functions return per-image int64 counts that add up over images like the mIoU's (see
docs/metrics.md).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import cv2
import numpy as np

from .boundary import class_label_maps, ratio_from_pair_counts

__all__ = ['object_counts', 'object_size_counts', 'recall_from_counts', 'size_iou_counts']

BUCKETS = ('small', 'medium', 'large')


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, float]:
    t = tuple(float(x) for x in thresholds)
    if len(t) != 2 or not 0 < t[0] <= t[1]:
        raise ValueError(f'thresholds must be (small, large) fractions with 0 < small <= large, got {thresholds!r}')
    return t


def _class_objects(p: np.ndarray, g: np.ndarray, num_classes: int, thresholds: tuple[float, float],
                   with_false_positives: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per class c with ground truth: ``(c, area [K], hits [K], bucket [K], fp [3])`` of its K objects
    (pixels, pixels predicted as c, size bucket 0 / 1 / 2) and the number of its false positives whose
    nearest object is in each bucket (zeros unless ``with_false_positives``). ``p`` and ``g`` come from
    ``class_label_maps``."""
    h, w = g.shape
    limits = np.array([thresholds[0] * h * w, thresholds[1] * h * w])
    present = np.flatnonzero(np.bincount(g.ravel(), minlength=num_classes + 1)[:num_classes])
    # Pixels predicted as another class than their (non-ignored) ground truth: the false positives of p's class.
    wrong = (p != g) & (g != num_classes) if with_false_positives else None  # [H, W]
    for c in present:
        gt_c = (g == c).view(np.uint8)  # [H, W] 0 / 1
        pred_c = p == c  # [H, W]; False on ignored pixels
        fp = wrong & pred_c if with_false_positives else None  # [H, W]
        x, y, bw, bh = cv2.boundingRect(gt_c if fp is None else gt_c | fp.view(np.uint8))
        crop = (slice(y, y + bh), slice(x, x + bw))  # every object (and false positive) lies inside
        gt_crop = gt_c[crop]
        # (connectedComponentsWithStats is several times slower than the labels plus a bincount.)
        k, comp = cv2.connectedComponents(gt_crop, connectivity=8, ltype=cv2.CV_32S)  # [h, w] 0, 1..K
        on = gt_crop.view(bool)  # [h, w]
        area = np.bincount(comp[on], minlength=k)[1:].astype(np.int64)  # [K]
        hits = np.bincount(comp[on & pred_c[crop]], minlength=k)[1:].astype(np.int64)  # [K]
        bucket = np.searchsorted(limits, area, side='right')  # [K]: < small -> 0, >= large -> 2
        fp_count = np.zeros(3, np.int64)
        if fp is not None:
            fp_crop = fp[crop]
            if bucket.min() == bucket.max():  # one bucket: no need to know which object is nearest
                fp_count[bucket[0]] = np.count_nonzero(fp_crop)
            elif fp_crop.any():
                # Each ground-truth pixel of c gets its own label; every pixel takes that of the nearest one.
                _, nearest = cv2.distanceTransformWithLabels(1 - gt_crop, cv2.DIST_L2, 5,
                                                             labelType=cv2.DIST_LABEL_PIXEL)
                object_of = np.zeros(int(nearest.max()) + 1, np.int64)
                object_of[nearest[on]] = comp[on]  # pixel label -> component 1..K
                fp_count = np.bincount(bucket[object_of[nearest[fp_crop]] - 1], minlength=3)
        yield int(c), area, hits, bucket, fp_count


def _counts(pred, gt, num_classes: int, ignore_index: int, thresholds: Sequence[float],
            objects: bool, sizes: bool) -> tuple[np.ndarray, np.ndarray]:
    t = _check_thresholds(thresholds)
    p, g = class_label_maps(pred, gt, num_classes, ignore_index)
    n = int(num_classes)
    obj = np.zeros((3, 2, n), np.int64)
    size = np.zeros((3, 2, n), np.int64)
    for c, area, hits, bucket, fp_count in _class_objects(p, g, n, t, with_false_positives=sizes):
        if objects:
            obj[:, 0, c] = np.bincount(bucket, weights=2 * hits >= area, minlength=3)
            obj[:, 1, c] = np.bincount(bucket, minlength=3)
        if sizes:
            size[:, 0, c] = np.bincount(bucket, weights=hits, minlength=3)
            size[:, 1, c] = np.bincount(bucket, weights=area, minlength=3) + fp_count
    return obj, size


def object_counts(pred, gt, num_classes: int, ignore_index: int = 255,
                  thresholds: Sequence[float] = (0.001, 0.01)) -> np.ndarray:
    """Found and total ground-truth objects of one image, per size bucket and class.

    Args:
        pred: [H, W] integer predicted classes (numpy, or a torch tensor).
        gt: [H, W] integer ground truth; ``ignore_index`` marks pixels that are not evaluated.
        num_classes: number of classes C.
        ignore_index: the ground truth's ignore label.
        thresholds: ``(small, large)`` fractions of the image area: small < small * H * W <= medium <
            large * H * W <= large (defaults 0.1% and 1%).

    Returns:
        int64 [3, 2, C]: bucket (small, medium, large) x (found, total) x class. An object (8-connected
        component of a class's ground truth) is found when >= half its pixels are predicted as its
        class. Sum over images, then :func:`recall_from_counts`.
    """
    return _counts(pred, gt, num_classes, ignore_index, thresholds, objects=True, sizes=False)[0]


def size_iou_counts(pred, gt, num_classes: int, ignore_index: int = 255,
                    thresholds: Sequence[float] = (0.001, 0.01)) -> np.ndarray:
    """IoU counts of one image restricted to the ground-truth objects of each size bucket.

    Args: as :func:`object_counts`.

    Returns:
        int64 [3, 2, C]: bucket x (intersection, union) x class. For bucket b and class c with R the union
        of c's objects in b: intersection = pixels of R predicted as c; union = |R| + the pixels
        predicted as c whose ground truth is another class and whose nearest object of c is in b (the
        module docstring has the details). Sum over images; IoU = intersection / union
        (:func:`seg.evaluation.boundary.boundary_iou_from_counts` computes it for any such counts).
    """
    return _counts(pred, gt, num_classes, ignore_index, thresholds, objects=False, sizes=True)[1]


def object_size_counts(pred, gt, num_classes: int, ignore_index: int = 255,
                       thresholds: Sequence[float] = (0.001, 0.01)) -> tuple[np.ndarray, np.ndarray]:
    """``(object_counts(...), size_iou_counts(...))`` from one pass over the connected components (what an
    evaluation loop wants: the components are the costly part)."""
    return _counts(pred, gt, num_classes, ignore_index, thresholds, objects=True, sizes=True)


def recall_from_counts(counts) -> np.ndarray:
    """Object recall ``found / total`` per bucket and class, NaN where there is no object.

    Args:
        counts: [..., 3, 2, C] from :func:`object_counts`, summed over images (or batches of such sums).

    Returns:
        float64 [..., 3, C].
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim < 3 or c.shape[-3:-1] != (3, 2):
        raise ValueError(f'counts must be [..., 3, 2, C] (bucket, (found, total), class), got shape {c.shape}')
    return ratio_from_pair_counts(c[..., 0, :], c[..., 1, :])
