"""Boundary quality of a semantic segmentation: Boundary IoU and trimap pixel accuracy, per image.

Boundary IoU (Cheng, Girshick, Dollár, Berg, Kirillov, "Boundary IoU: Improving Object-Centric Image
Segmentation Evaluation", CVPR 2021). For a class c with ground-truth mask G and predicted mask P,
G_d is the set of pixels of G within distance d of G's contour and P_d likewise for P::

    Boundary IoU_c = |G_d ∩ P_d| / |G_d ∪ P_d|        (G_d ⊂ G and P_d ⊂ P: the inner bands)

Trimap accuracy (the band "trimap" of Kohli, Ladický, Torr, "Robust Higher Order Potentials for
Enforcing Label Consistency", IJCV 2009, used to measure boundary accuracy by DeepLab, Chen et al.,
ICLR 2015 / TPAMI 2018): the pixel accuracy over the pixels within w pixels of a ground-truth
boundary, for several w.

Distance. Everything here uses the chessboard (L-infinity) distance between pixel centres: a pixel
is within d of a set when the (2d+1) x (2d+1) square centred on it meets the set. This is what the
paper's reference implementation computes (its band is the mask minus the mask eroded d times by a
3x3 square), and it turns the band of every class at once into one erosion and one dilation of the
label map with a square kernel (OpenCV's morphology, separable and vectorised): a pixel is in its
class's band exactly when the minimum and the maximum label of its square differ.

Contour. A pixel of a mask is at distance k of the mask's contour when the nearest pixel outside the
mask is k pixels away (so d = 1 is the one-pixel inner contour). Outside the image counts as outside
the mask, as in the paper's implementation (it pads the mask with zeros): the pixels within d of the
image border are in the band. So with d >= half the shorter side the band is the whole mask and
Boundary IoU is the plain IoU.

Ignore pixels (``ignore_index`` in the ground truth) belong to neither mask: the prediction is masked
by them first (what it says there never matters) and the edge of an ignored region is a contour of
both masks, like the edge of any other class.

The functions return per-image counts, int64, that add up over images exactly like the mIoU's
pixel counts; the metric of a set of images is computed once from the summed counts (see
docs/metrics.md for the bootstrap over images).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch

from .metrics import iou_from_areas

__all__ = ['as_area_counts', 'boundary_counts', 'boundary_iou_from_counts', 'default_boundary_distance',
           'trimap_counts']


def _to_numpy(x) -> np.ndarray:
    """A numpy view of an array-like; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, 'detach') and hasattr(x, 'cpu'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _to_numpy(pred), _to_numpy(gt)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f'pred and gt must be [H, W] label maps of one shape, got {pred.shape} and {gt.shape}')
    for name, a in (('pred', pred), ('gt', gt)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise ValueError(f'{name} must hold integer class indices, got dtype {a.dtype}')
    return pred, gt


def class_label_maps(pred, gt, num_classes: int, ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Validated label maps for OpenCV: ``(pred, gt)`` as uint8 (uint16 above 255 classes) with every
    ignored pixel set to ``num_classes`` in both, so the prediction is masked by the ignore label.

    Raises:
        ValueError: on shapes, dtypes, ``num_classes``, a ground-truth value outside [0, C) that is not
            ``ignore_index``, or a prediction outside [0, C) on a pixel that is not ignored.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
    if num_classes >= 65535:
        raise ValueError(f'at most 65534 classes, got {num_classes}')
    pred, gt = _check_pair(pred, gt)
    n = int(num_classes)
    valid = gt != ignore_index  # [H, W]
    bad_gt = valid & ((gt < 0) | (gt >= n))
    if bad_gt.any():
        raise ValueError(f'gt has values {np.unique(gt[bad_gt])[:10].tolist()} outside [0, {n}) that are not '
                         f'ignore_index {ignore_index}')
    bad_pred = valid & ((pred < 0) | (pred >= n))
    if bad_pred.any():
        raise ValueError(f'pred has values {np.unique(pred[bad_pred])[:10].tolist()} outside [0, {n}) on pixels '
                         f'whose gt is not ignore_index {ignore_index}')
    dtype = np.uint8 if n < 255 else np.uint16
    g = np.where(valid, gt, n).astype(dtype)
    p = np.where(valid, pred, n).astype(dtype)
    return p, g


def _cv_labels(x: np.ndarray) -> np.ndarray:
    """An equality-preserving copy of an integer label map in a dtype OpenCV morphology takes."""
    if x.size and x.min() >= 0 and x.max() <= 255:
        return x.astype(np.uint8, copy=False)
    if x.size and x.min() >= 0 and x.max() <= 65535:
        return x.astype(np.uint16, copy=False)
    return np.unique(x, return_inverse=True)[1].reshape(x.shape).astype(np.uint32).astype(np.float32)


def label_edge_band(labels: np.ndarray, d: int, image_border: bool) -> np.ndarray:
    """bool [H, W]: the pixels whose (2d+1) x (2d+1) square holds a pixel of another label (chessboard
    distance <= d to one), and with ``image_border`` also those within d of the outside of the image.

    For a mask M = (labels == c), ``band & M`` is M's inner band of width d (see the module docstring).
    """
    h, w = labels.shape
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    # OpenCV's default border for erode / dilate leaves the outside of the image out of the min / max.
    band = cv2.erode(labels, kernel) != cv2.dilate(labels, kernel)  # [H, W]
    if image_border:
        band[:d] = True
        band[max(h - d, 0):] = True
        band[:, :d] = True
        band[:, max(w - d, 0):] = True
    return band


def default_boundary_distance(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """The paper's band width: ``dilation_ratio`` of the image diagonal, rounded, at least 1 pixel
    (2% of 1024 x 2048 is 46 pixels)."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def boundary_counts(pred, gt, num_classes: int, ignore_index: int = 255, dilation_ratio: float = 0.02,
                    d: int | None = None) -> np.ndarray:
    """Boundary IoU counts of one image: per class, the intersection and the union of the inner bands.

    Args:
        pred: [H, W] integer predicted classes (numpy, or a torch tensor).
        gt: [H, W] integer ground truth; ``ignore_index`` marks pixels that are not evaluated.
        num_classes: number of classes C.
        ignore_index: the ground truth's ignore label. Ignored pixels are in no mask, pred's included.
        dilation_ratio: the band width as a fraction of the image diagonal (used when ``d`` is None):
            ``d = max(1, round(dilation_ratio * sqrt(H^2 + W^2)))``, the paper's default 0.02.
        d: the band width in pixels (chessboard distance, >= 1), overriding ``dilation_ratio``.

    Returns:
        int64 [2, C]: row 0 ``|G_d ∩ P_d|``, row 1 ``|G_d ∪ P_d|`` for each class c, where G_d (P_d)
        are the pixels of the ground-truth (predicted) mask of c within d of that mask's contour.
        Sum the counts of the images, then :func:`boundary_iou_from_counts`.
    """
    p, g = class_label_maps(pred, gt, num_classes, ignore_index)
    h, w = g.shape
    if d is None:
        d = default_boundary_distance(h, w, dilation_ratio)
    if isinstance(d, bool) or int(d) != d or d < 1:
        raise ValueError(f'd must be a positive integer number of pixels, got {d!r}')
    d = int(d)
    n = int(num_classes)
    g_band = label_edge_band(g, d, image_border=True) & (g < n)  # [H, W] G_d of every class at once
    p_band = label_edge_band(p, d, image_border=True) & (p < n)  # [H, W] P_d
    both = g_band & p_band & (g == p)  # [H, W] in G_d and P_d of the same class
    g_area = np.bincount(g[g_band], minlength=n)[:n]
    p_area = np.bincount(p[p_band], minlength=n)[:n]
    inter = np.bincount(g[both], minlength=n)[:n]
    return np.stack([inter, g_area + p_area - inter]).astype(np.int64)  # [2, C]


def boundary_iou_from_counts(counts) -> np.ndarray:
    """Per-class IoU ``intersection / union`` from summed ``(intersection, union)`` counts, NaN where the
    union is 0 (a class whose band is empty in both ground truth and prediction).

    Args:
        counts: [..., 2, C] (e.g. :func:`boundary_counts` summed over images, or a batch of such sums;
            any (intersection, union) counts work, those of :func:`seg.evaluation.objects.size_iou_counts`
            included).

    Returns:
        float64 [..., C].
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim < 2 or c.shape[-2] != 2:
        raise ValueError(f'counts must be [..., 2, C] (intersection, union), got shape {c.shape}')
    return ratio_from_pair_counts(c[..., 0, :], c[..., 1, :])


def ratio_from_pair_counts(part, whole) -> np.ndarray:
    """float64 ``part / whole``, NaN where ``whole`` is 0: the project's one IoU-from-counts,
    :func:`seg.evaluation.metrics.iou_from_areas`, with ``(tp, gt_area, pred_area) = (part, whole, part)``."""
    part = torch.from_numpy(np.asarray(part, dtype=np.float64))
    whole = torch.from_numpy(np.asarray(whole, dtype=np.float64))
    return iou_from_areas(part, whole, part).numpy()


def as_area_counts(counts) -> np.ndarray:
    """``(a, b)`` pair counts [..., 2, C] as ``(tp, gt_area, pred_area) = (a, b, a)`` [..., 3, C].

    The IoU of :func:`seg.analysis.stats.iou_from_counts`, ``tp / (gt_area + pred_area - tp)``, is then
    ``a / b`` (NaN where b = 0, as in :func:`boundary_iou_from_counts`), so ``bootstrap_paired_difference`` resamples images of any of these
    ratio metrics unchanged: Boundary IoU (intersection, union), size IoU, object recall (found,
    total) and trimap accuracy (correct, total, moved to [..., 2, widths]).
    """
    c = np.asarray(counts)
    if c.ndim < 2 or c.shape[-2] != 2:
        raise ValueError(f'counts must be [..., 2, C], got shape {c.shape}')
    return np.stack([c[..., 0, :], c[..., 1, :], c[..., 0, :]], axis=-2)


def trimap_counts(pred, gt, widths: Sequence[int] = (1, 2, 4, 8, 16), ignore_index: int = 255) -> np.ndarray:
    """Trimap pixel accuracy counts of one image: correct and evaluated pixels near ground-truth boundaries.

    The band of width w holds the evaluated pixels (ground truth not ``ignore_index``) with a pixel of
    another ground-truth label at chessboard distance <= w: ``w`` pixels on each side of every boundary
    between two labels, the edge of an ignored region included (the image border is no boundary).
    w = 1 is the pixels with a differently labelled 8-neighbour.

    Args:
        pred: [H, W] integer predicted classes.
        gt: [H, W] integer ground truth.
        widths: band widths in pixels (positive integers).
        ignore_index: the ground truth's ignore label.

    Returns:
        int64 [len(widths), 2]: per width, (pixels of the band with pred == gt, pixels of the band).
        Sum over images; accuracy = correct / total.
    """
    pred, gt = _check_pair(pred, gt)
    widths = tuple(widths)
    if not widths or any(isinstance(w, bool) or int(w) != w or w < 1 for w in widths):
        raise ValueError(f'widths must be positive integers, got {widths!r}')
    labels = _cv_labels(gt)
    valid = gt != ignore_index
    correct = valid & (pred == gt)  # [H, W]
    out = np.zeros((len(widths), 2), np.int64)
    for i, w in enumerate(widths):
        band = label_edge_band(labels, int(w), image_border=False)  # [H, W]
        out[i, 0] = np.count_nonzero(band & correct)
        out[i, 1] = np.count_nonzero(band & valid)
    return out
