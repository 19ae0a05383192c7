"""What attention attends to, measured against the ground truth.

For an attention row (one query pixel's weights over the N = H * W positions of its feature map) and
the ground-truth label map at that resolution:

- same-class mass: the share of the weight on pixels of the query's own ground-truth class, after
  dropping the ignored pixels and renormalising the row over the others (the "intra-class" attention
  that Non-local / DANet / CCNet are meant to learn; cf. the class-affinity supervision of CPNet,
  Yu et al., CVPR 2020);
- its uniform baseline: the share a uniform row would put there, the fraction of the valid pixels that
  are of the query's class (same-class mass above the baseline is attention that prefers its class);
- normalised entropy: ``-sum w log w / log(valid positions)``, 1 for a uniform row, 0 for a one-hot
  one;
- mean attention distance: ``sum w * ||pos - query||``, in pixels of the label map (the expected
  Euclidean distance of the attended position; cf. the "attention distance" of ViT, Dosovitskiy et
  al., ICLR 2021);
- by distance: the row's mass, and its same-class mass, on the positions whose distance to the query
  lies in each bucket ``[edge_k, edge_k+1)`` (default edges 0, 4, 16, 64, inf), with the uniform
  row's shares beside them: how far attention looks, and whether the far mass is on the right class.

All are accumulated per class of the query as sums (and a count), so they add over batches and images;
:func:`attention_means` divides. For gates (SE / ECA channel gates, CBAM spatial gates),
:func:`gate_stats` gives the spread of the gate values and, for a spatial gate, the per-class mean gate
and how much it differs between classes.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .boundary import _to_numpy

__all__ = ['attention_means', 'attention_row_stats', 'gate_class_gap', 'gate_stats']

DISTANCE_EDGES = (0.0, 4.0, 16.0, 64.0, math.inf)

_SUMS = ('same_class_mass', 'baseline', 'entropy', 'distance')
_BY_DISTANCE = ('mass_by_distance', 'same_class_mass_by_distance', 'baseline_by_distance',
                'same_class_baseline_by_distance')


def attention_row_stats(rows, query_yx, labels, num_classes: int, ignore_index: int = 255,
                        distance_edges: Sequence[float] = DISTANCE_EDGES, chunk: int = 256) -> dict:
    """Per-class sums of the statistics of P attention rows (see the module docstring).

    Args:
        rows: [P, N] non-negative weights (or one row [N]), N = H * W in row-major order (position
            ``y * W + x``). Rows over fewer positions (criss-cross attention's H + W - 1) must be
            scattered into a full row with zeros first. Each row is renormalised over the valid
            positions, so it need not sum to 1.
        query_yx: [P, 2] (or [2]) integer ``(y, x)`` of each row's query pixel on the same grid.
        labels: [H, W] integer ground truth at the attention's resolution (nearest-neighbour
            downsampled by the caller).
        num_classes: number of classes C.
        ignore_index: label of the pixels that are neither queries nor attended positions.
        distance_edges: increasing bucket edges in pixels of ``labels``; bucket k is
            ``[edges[k], edges[k+1])``, mass at other distances is in no bucket.
        chunk: rows processed at once (memory is about 10 float64 [chunk, N] arrays).

    Returns:
        dict of float64 arrays, summed over the rows whose query pixel is valid and whose weight on
        valid positions is positive (the others are left out), grouped by the query's class:
        ``count`` [C] rows; ``same_class_mass``, ``baseline`` (uniform row's same-class mass),
        ``entropy`` (normalised; a row over a single valid position counts 0), ``distance`` [C];
        ``mass_by_distance``, ``same_class_mass_by_distance``, ``baseline_by_distance``,
        ``same_class_baseline_by_distance`` [C, B] (B = len(edges) - 1); ``distance_edges`` [B + 1].
        Add the dicts of several calls key by key (:func:`attention_means` turns sums into means).
    """
    w_all = np.asarray(_to_numpy(rows), dtype=np.float64)
    q = np.asarray(_to_numpy(query_yx))
    lab = _to_numpy(labels)
    if w_all.ndim == 1:
        w_all = w_all[None]
    if q.ndim == 1:
        q = q[None]
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f'labels must be an integer [H, W] map, got {lab.dtype} {lab.shape}')
    h, w = lab.shape
    n = h * w
    if w_all.ndim != 2 or w_all.shape[1] != n:
        raise ValueError(f'rows must be [P, {n}] for {h} x {w} labels, got {w_all.shape}')
    if q.shape != (w_all.shape[0], 2) or not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f'query_yx must be integer [{w_all.shape[0]}, 2], got {q.dtype} {q.shape}')
    if ((q < 0) | (q >= np.array([h, w]))).any():
        raise ValueError(f'query_yx outside the {h} x {w} grid')
    if not np.isfinite(w_all).all() or (w_all < 0).any():
        raise ValueError('attention weights must be finite and non-negative')
    edges = np.asarray(distance_edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f'distance_edges must be >= 2 increasing values, got {distance_edges!r}')
    c = int(num_classes)
    flat = lab.ravel()  # [N]
    valid = flat != ignore_index  # [N]
    bad = valid & ((flat < 0) | (flat >= c))
    if bad.any():
        raise ValueError(f'labels has values {np.unique(flat[bad])[:10].tolist()} outside [0, {c}) that are not '
                         f'ignore_index {ignore_index}')
    b = edges.size - 1
    out = {key: np.zeros(c) for key in ('count', *_SUMS)}
    out.update({key: np.zeros((c, b)) for key in _BY_DISTANCE})
    out['distance_edges'] = edges.copy()

    n_valid = int(valid.sum())
    if n_valid == 0:
        return out
    cls = np.where(valid, flat, c).astype(np.int64)  # [N], ignored -> C
    class_pixels = np.bincount(cls, minlength=c + 1)[:c].astype(np.float64)  # [C] valid pixels of each class
    ys, xs = np.divmod(np.arange(n), w)  # [N]
    log_valid = math.log(n_valid)

    q_cls_all = cls[q[:, 0] * w + q[:, 1]]  # [P]
    for start in range(0, w_all.shape[0], chunk):
        wt = w_all[start:start + chunk] * valid  # [p, N]
        qy, qx = q[start:start + chunk, 0], q[start:start + chunk, 1]  # [p]
        q_cls = q_cls_all[start:start + chunk]  # [p]
        s = wt.sum(axis=1)  # [p]
        keep = (q_cls < c) & (s > 0)
        if not keep.any():
            continue
        wt, qy, qx, q_cls = wt[keep] / s[keep, None], qy[keep], qx[keep], q_cls[keep]
        same = cls[None, :] == q_cls[:, None]  # [p, N] (ignored positions never match: their class is C)
        dist = np.hypot(ys[None, :] - qy[:, None], xs[None, :] - qx[:, None])  # [p, N]
        bucket = np.searchsorted(edges, dist, side='right') - 1  # [p, N]; -1 or B: no bucket
        with np.errstate(divide='ignore', invalid='ignore'):
            plogp = np.where(wt > 0, wt * np.log(np.where(wt > 0, wt, 1.0)), 0.0)  # [p, N]
        entropy = -plogp.sum(axis=1) / log_valid if n_valid > 1 else np.zeros(len(wt))
        per_row = {
            'count': np.ones(len(wt)),
            'same_class_mass': (wt * same).sum(axis=1),
            'baseline': class_pixels[q_cls] / n_valid,
            'entropy': entropy,
            'distance': (wt * dist).sum(axis=1),
        }
        for key, value in per_row.items():
            out[key] += np.bincount(q_cls, weights=value, minlength=c)[:c]
        uniform = valid / n_valid  # [N]
        for k in range(b):
            in_k = bucket == k  # [p, N]
            for key, value in (('mass_by_distance', (wt * in_k).sum(axis=1)),
                               ('same_class_mass_by_distance', (wt * (in_k & same)).sum(axis=1)),
                               ('baseline_by_distance', (in_k * uniform).sum(axis=1)),
                               ('same_class_baseline_by_distance', ((in_k & same) * uniform).sum(axis=1))):
                out[key][:, k] += np.bincount(q_cls, weights=value, minlength=c)[:c]
    return out


def attention_means(sums: dict) -> dict:
    """Means per class from (summed) :func:`attention_row_stats` dicts: every sum divided by ``count``
    (NaN for a class without rows), plus ``all``: the same means over every row, class-blind.

    Returns:
        ``{key: [C] or [C, B]}`` for each summed key and ``{'all': {key: scalar or [B]}}``.
    """
    count = np.asarray(sums['count'], dtype=np.float64)  # [C]
    out: dict = {'count': count.copy(), 'distance_edges': np.asarray(sums['distance_edges'])}
    all_rows = count.sum()
    out['all'] = {}
    for key in (*_SUMS, *_BY_DISTANCE):
        v = np.asarray(sums[key], dtype=np.float64)
        denom = count if v.ndim == 1 else count[:, None]
        with np.errstate(invalid='ignore', divide='ignore'):
            out[key] = np.where(denom > 0, v / np.where(denom > 0, denom, 1.0), np.nan)
        out['all'][key] = v.sum(axis=0) / all_rows if all_rows > 0 else np.full(v.shape[1:], np.nan)
    return out


def gate_class_gap(class_mean) -> float:
    """Mean absolute difference of the per-class mean gates over all pairs of classes that have one
    (NaN entries skipped); NaN with fewer than two classes."""
    m = np.asarray(class_mean, dtype=np.float64)
    m = m[np.isfinite(m)]
    if m.size < 2:
        return math.nan
    i, j = np.triu_indices(m.size, k=1)
    return float(np.abs(m[i] - m[j]).mean())


def gate_stats(gate, labels=None, num_classes: int | None = None, ignore_index: int = 255) -> dict:
    """Statistics of one image's gate.

    Args:
        gate: [C_feat] channel gate (SE, ECA, CBAM's channel part) or [H, W] spatial gate (CBAM's
            spatial part; squeeze a [1, H, W] one first).
        labels: [H, W] integer ground truth at the gate's resolution (spatial gates only, optional).
        num_classes: number of classes (with ``labels``).
        ignore_index: the ground truth's ignore label.

    Returns:
        ``mean`` and ``std`` (population std, ddof 0) of all the gate values. For a spatial gate with
        labels also ``class_sum`` and ``class_count`` [num_classes] (sum of the gate and pixel count per
        ground-truth class, ignored pixels left out: they add over images), ``class_mean`` [num_classes]
        (NaN for an absent class) and ``class_gap``, :func:`gate_class_gap` of ``class_mean``: the mean
        absolute difference of the per-class mean gates over all pairs of present classes (NaN with
        fewer than two).
    """
    g = np.asarray(_to_numpy(gate), dtype=np.float64)
    if g.ndim not in (1, 2) or g.size == 0:
        raise ValueError(f'gate must be [C] (channel) or [H, W] (spatial), got shape {g.shape}')
    out = {'mean': float(g.mean()), 'std': float(g.std())}
    if labels is None:
        return out
    if g.ndim != 2:
        raise ValueError('labels apply to a spatial [H, W] gate only')
    lab = _to_numpy(labels)
    if lab.shape != g.shape or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f'labels must be an integer map of the gate\'s shape {g.shape}, got {lab.dtype} {lab.shape}')
    if num_classes is None or int(num_classes) < 1:
        raise ValueError('num_classes is needed with labels')
    c = int(num_classes)
    valid = lab != ignore_index
    if (valid & ((lab < 0) | (lab >= c))).any():
        raise ValueError(f'labels outside [0, {c}) that are not ignore_index {ignore_index}')
    out['class_sum'] = np.bincount(lab[valid], weights=g[valid], minlength=c)[:c]
    out['class_count'] = np.bincount(lab[valid], minlength=c)[:c].astype(np.int64)
    with np.errstate(invalid='ignore', divide='ignore'):
        out['class_mean'] = np.where(out['class_count'] > 0, out['class_sum'] / np.maximum(out['class_count'], 1),
                                     np.nan)
    out['class_gap'] = gate_class_gap(out['class_mean'])
    return out
