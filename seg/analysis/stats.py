"""Statistics of a comparison over seeds: mean, standard deviation, confidence intervals, and the
two-level (seeds and validation images) bootstrap of paired differences.

References: Student's t interval of a mean; the percentile bootstrap (Efron & Tibshirani, An
Introduction to the Bootstrap, 1993); resampling data with more than one source of variation
(Davison & Hinkley, Bootstrap Methods and their Application, 1997, §3.8 "Hierarchical data"), here a
crossed design, every seed evaluated on the same images (Owen, "The pigeonhole bootstrap", Annals of
Applied Statistics 1(2), 2007: rows and columns resampled independently, mildly conservative). The
difference of two models resamples the images (one draw shared by every run) and draws the seed level
from Student's t scaled by the spread of the per-seed differences: a nonparametric draw of 3-5 seeds
cannot be wider than their range and calls a null difference distinguishable up to 1 time in 4
(:func:`paired_bootstrap`, docs/compare.md). Fewer than :data:`MIN_SEEDS` seeds: "too few seeds".

A run's accuracy is recomputed from per-image pixel counts, ``counts[i] = (tp, gt_area, pred_area)``
per class (shape (N_images, 3, C)), exactly as the evaluation computes it: per-class IoU from the
counts summed over the images by the evaluation's own :func:`seg.evaluation.metrics.iou_from_areas`,
mIoU the mean over the classes that have one. :func:`paired_bootstrap` is the generic core: any
per-image counts (N, ...) and any statistic of their sum over the images (boundary IoU from (N, 2, C)
counts, pixel accuracy, ...).

The bootstrap never materialises resampled counts: a replicate's draw of the images is a vector of
multiplicities (how often each image was drawn, [N]), and the pooled counts of every run of both models
are one matrix product ``weights [R, N] @ counts [N, runs * K]``, in chunks of replicates. Pixel counts
are integers, so the pooled counts are exact in float64 (as long as they stay below 2**53): the result
is the same as summing indexed copies of the counts, without the [seeds, replicates, images, ...] array.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from seg.evaluation.metrics import iou_from_areas

__all__ = ['DISTINGUISHABLE', 'Difference', 'Interval', 'MIN_SEEDS', 'NOT_DISTINGUISHABLE', 'NO_INTERVAL',
           'SEED_LEVELS', 'TOO_FEW_SEEDS', 'bootstrap_paired_difference', 'iou_from_counts', 'mean_interval',
           'miou_and_class_iou', 'miou_from_counts', 'paired_bootstrap', 'seeds_needed']

# Verdicts of a difference (what the report prints).
DISTINGUISHABLE = 'distinguishable'
NOT_DISTINGUISHABLE = 'not distinguishable'
TOO_FEW_SEEDS = 'too few seeds'
NO_INTERVAL = 'no interval'
MIN_SEEDS = 3
"""Fewer paired seeds than this: no difference is called distinguishable, whatever its interval."""
SEED_LEVELS = ('student', 'resample')
_CHUNK_BYTES = 32 * 2 ** 20  # working memory of one chunk of replicates (weights, pooled counts, statistic)


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

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (``factor * value``; ``factor > 0``)."""
        return replace(self, mean=factor * self.mean, std=factor * self.std, low=factor * self.low,
                       high=factor * self.high)


@dataclass
class Difference(Interval):
    """``model - baseline`` of one statistic, over runs paired by seed.

    The inherited fields are the difference and its interval over seeds and images (see
    :func:`paired_bootstrap`): ``mean`` the mean over the seeds of the per-seed differences on all the
    images, ``low`` / ``high`` the percentile interval, ``std`` the std of the replicates, ``n`` how
    many replicates had a value.

    Attributes:
        seeds: number of paired seeds with a value.
        per_seed: the difference of each seed's pair of runs, on all the images.
        image_interval: the interval over the validation images only, the seeds held fixed: how much
            *these runs'* difference depends on the images, not whether the models differ.
        seed_level: how the seeds were resampled (``'student'`` or ``'resample'``).
        min_seeds: fewer seeds than this and the verdict is "too few seeds".
    """

    seeds: int = 0
    per_seed: tuple[float, ...] = ()
    image_interval: Interval | None = None
    seed_level: str = 'student'
    min_seeds: int = MIN_SEEDS

    @property
    def verdict(self) -> str:
        """``'too few seeds'`` below ``min_seeds``; else ``'no interval'`` (NaN), ``'not distinguishable'``
        (the interval over seeds and images contains 0) or ``'distinguishable'``."""
        if self.seeds < self.min_seeds:
            return TOO_FEW_SEEDS
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return NO_INTERVAL
        return NOT_DISTINGUISHABLE if self.contains_zero else DISTINGUISHABLE

    @property
    def distinguishable(self) -> bool:
        return self.verdict == DISTINGUISHABLE

    def scaled(self, factor: float) -> Difference:
        out = super().scaled(factor)
        return replace(out, per_seed=tuple(factor * v for v in self.per_seed),
                       image_interval=self.image_interval.scaled(factor) if self.image_interval else None)

    def detail(self) -> dict:
        """What :meth:`as_dict` (the interval) leaves out: seeds, per-seed values, the image-only
        interval, the method and the verdict."""
        return dict(seeds=self.seeds, per_seed=list(self.per_seed), seed_level=self.seed_level,
                    min_seeds=self.min_seeds, verdict=self.verdict,
                    image_only=self.image_interval.as_dict() if self.image_interval else None)


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


def seeds_needed(spread: float, difference: float, confidence: float = 0.95, power: float = 0.8,
                 max_seeds: int = 10_000) -> int:
    """Seeds (pairs of runs) for the t interval of a mean difference to exclude 0 with probability ``power``.

    The smallest n with ``sqrt(n) * |difference| / spread >= t_(1-a/2, n-1) + t_(power, n-1)``, where
    ``spread`` is the seed-to-seed standard deviation of the per-seed difference and ``a = 1 -
    confidence`` (the usual approximation for a one-sample t test's power; the image noise left out).
    About ``(z_(1-a/2) + z_power)**2 * (spread / difference)**2``: 7.85 (s/d)^2 at 95% and 80% power.
    """
    from scipy.stats import t as student_t

    if spread < 0 or difference == 0:
        raise ValueError(f'need spread >= 0 and a difference != 0, got {spread} and {difference}')
    ratio = abs(difference) / spread if spread > 0 else math.inf
    for n in range(2, max_seeds + 1):
        need = student_t.ppf(0.5 + confidence / 2, n - 1) + student_t.ppf(power, n - 1)
        if math.sqrt(n) * ratio >= need:
            return n
    return max_seeds


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


def miou_and_class_iou(pooled: np.ndarray) -> np.ndarray:
    """The statistic of :func:`bootstrap_paired_difference`: ``[mIoU, IoU_0, ..., IoU_(C-1)]`` of pooled counts.

    Args:
        pooled: (B, 3, C) counts summed over (a draw of) the images.

    Returns:
        (B, 1 + C) fractions; a class without union is NaN and left out of the mIoU.
    """
    iou = iou_from_counts(pooled)  # [B, C]
    return np.concatenate([_nanmean(iou, axis=-1)[:, None], iou], axis=1)


def _percentile_interval(point: float, reps: np.ndarray, confidence: float) -> Interval:
    """``point`` with the percentile interval and std of the finite replicates ``reps`` [R]."""
    reps = reps[np.isfinite(reps)]
    if not math.isfinite(point) or reps.size == 0:
        return Interval(point, math.nan, math.nan, math.nan, int(reps.size))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha])
    return Interval(point, float(reps.std(ddof=1)) if reps.size > 1 else math.nan, float(low), float(high),
                    int(reps.size))


def _image_weights(rng: np.random.Generator, n_images: int, rows: int) -> np.ndarray:
    """``rows`` bootstrap draws of the images as multiplicities [rows, N] (float64): row r counts how often
    each image is among ``rng.integers(0, N, N)``, the draw an indexing bootstrap would take."""
    idx = rng.integers(0, n_images, size=(rows, n_images))  # [rows, N]
    idx += np.arange(rows, dtype=idx.dtype)[:, None] * n_images
    return np.bincount(idx.ravel(), minlength=rows * n_images).reshape(rows, n_images).astype(np.float64)


def _as_statistic(values: np.ndarray, rows: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] != rows:
        raise ValueError(f'the statistic must map pooled counts (B, ...) to (B,) or (B, P); got {values.shape} '
                         f'for B={rows}')
    return values


def paired_bootstrap(model: Sequence[np.ndarray], baseline: Sequence[np.ndarray],
                     statistic: Callable[[np.ndarray], np.ndarray], replicates: int = 1000,
                     confidence: float = 0.95, seed: int = 0, seed_level: str = 'student',
                     min_seeds: int = MIN_SEEDS, chunk_bytes: int = _CHUNK_BYTES) -> list[Difference]:
    """``statistic(model) - statistic(baseline)`` over runs paired by seed, with an interval over the seeds
    and the validation images, and one over the images only.

    Inputs: S pairs of runs (seed k of the model with seed k of the baseline), each with per-image
    counts ``x[k, i]`` (shape (N, ...)), on the same N images in the same order. ``f`` = ``statistic``
    maps counts summed over the images to P values. The difference of seed k on a weighting ``w`` of
    the images (``w[i]`` = how often image i is drawn) is::

        D_k(w) = f(sum_i w[i] * model[k][i]) - f(sum_i w[i] * baseline[k][i])

    and the point estimate is ``mean_k D_k(1)``: each seed's difference on all the images, averaged.

    Each replicate r draws the images once, ``w_r`` ~ Multinomial(N, 1/N) (N draws with replacement),
    the same draw for every run of both models: the seeds are crossed with the images (every run sees
    the same validation set), so an image draw that favours one model does so for all seeds, and the
    image error does not average out over the seeds. Then the seed level:

    * ``seed_level='student'`` (default): ``T_r = mean_k D_k(w_r) + t_r * s / sqrt(S)``, where ``s`` is
      the sample std (ddof 1) of the per-seed differences ``D_k(1)`` and ``t_r`` a draw of Student's t
      with S - 1 degrees of freedom (stratified, independent of the image draws: ``t_r = F^-1((pi_r +
      v_r) / R)``, ``pi`` a random permutation of 0..R-1, ``v_r`` uniform on [0, 1)). The seed level
      is drawn from the exact small-sample distribution of a mean of S normal seed effects: with no
      image noise the interval is Student's t interval of the per-seed differences, with seeds that
      agree exactly it is the image-only interval; in between, the convolution of the two.
    * ``seed_level='resample'``: draw S seeds with replacement (multiplicities ``m_r``) and take
      ``T_r = sum_k m_r[k] * D_k(w_r) / S``: two-stage resampling (Davison & Hinkley §3.8; Owen 2007
      for crossed data). It cannot give an interval wider than the range of the S per-seed
      differences (plus image noise), and so calls a null difference distinguishable far more often
      than 1 - confidence with few seeds (about 25% with 3 seeds, 16% with 5 when the seed spread
      dominates: docs/compare.md); kept for comparison and for many seeds.

    The interval is the percentile interval of the ``T_r``. The image-only interval is that of
    ``mean_k D_k(w_r)``, the seeds held fixed (what this function gave before the seed level: how
    much these runs' difference depends on the images). NaN values (a class without union in a draw)
    are left out of the means over the classes and over the seeds, as in the evaluation.

    Memory and time: the draws are turned into weights [chunk, N] and the pooled counts of every run
    of both models are one product ``weights @ counts[N, 2 * S * K]`` per chunk of replicates
    (``chunk_bytes`` of working memory), so nothing of size replicates x images x counts exists; what
    is held besides the inputs is one float64 copy of them, the chunk and the per-seed differences of
    every replicate, [R, S, P] float64 (benchmarks/bootstrap_scale.py, docs/compare.md).
    The image draws are those of ``np.random.default_rng(seed).integers(0, N, (replicates, N))`` (as
    an indexing implementation takes them); the seed level draws from ``default_rng((seed, 1))``.

    Args:
        model: per seed, the model's (N, ...) per-image counts.
        baseline: per seed (same seeds, same order), the baseline's counts on the same N images.
        statistic: pooled counts (B, ...) float64 -> (B,) or (B, P), vectorised over B (it is called on
            chunks of replicates x runs).
        replicates: number of bootstrap replicates R.
        confidence: the intervals' coverage.
        seed: seed of the resampling.
        seed_level: ``'student'`` or ``'resample'``.
        min_seeds: fewer seeds than this and the verdict is "too few seeds" (with one seed there is no
            interval over the seeds at all).
        chunk_bytes: working memory for one chunk of replicates.

    Returns:
        P :class:`Difference` s, one per value of the statistic.

    Raises:
        ValueError: no runs, unequal numbers of runs, counts of different shapes, an unknown
            ``seed_level``, or a statistic of the wrong shape.
    """
    from scipy.stats import t as student_t

    if seed_level not in SEED_LEVELS:
        raise ValueError(f'seed_level must be one of {SEED_LEVELS}, got {seed_level!r}')
    if not model or len(model) != len(baseline):
        raise ValueError(f'need the same number (>= 1) of runs of both models, got {len(model)} and {len(baseline)}')
    if replicates < 1:
        raise ValueError(f'need replicates >= 1, got {replicates}')
    runs = [np.asarray(c) for c in (*model, *baseline)]
    shape = runs[0].shape
    if len(shape) < 1 or shape[0] < 1 or any(r.shape != shape for r in runs):
        raise ValueError(f'counts must be (N, ...) with N >= 1, the same for every run of both models; got '
                         f'{sorted({r.shape for r in runs})}')
    n_seeds, n_images, inner = len(model), shape[0], shape[1:]
    width = int(np.prod(inner, dtype=np.int64))
    # [N, 2 * S * K] float64: the model's runs then the baseline's, each run's counts flattened (one
    # copy of the inputs; one wide product per chunk is several times faster than one product per run).
    counts = np.empty((n_images, 2 * n_seeds * width), dtype=np.float64)
    for j, r in enumerate(runs):
        counts[:, j * width:(j + 1) * width] = r.reshape(n_images, width)

    def per_seed_difference(pooled: np.ndarray) -> np.ndarray:
        # pooled [B, 2 * S * K] -> model minus baseline per seed [B, S, P]
        rows = pooled.shape[0]
        values = _as_statistic(statistic(pooled.reshape(rows * 2 * n_seeds, *inner)), rows * 2 * n_seeds)
        values = values.reshape(rows, 2, n_seeds, -1)
        return values[:, 0] - values[:, 1]

    point = per_seed_difference(counts.sum(axis=0, keepdims=True))[0]  # [S, P]: all the images once
    n_stats = point.shape[-1]

    # Image level: D_k(w_r) for every replicate and seed, [R, S, P], chunk by chunk.
    per_row = 8 * (3 * n_images + 4 * 2 * n_seeds * max(width, n_stats))  # draws, weights, pooled, statistic
    chunk = int(max(1, min(replicates, chunk_bytes // per_row)))
    rng = np.random.default_rng(seed)
    reps = np.empty((replicates, n_seeds, n_stats), dtype=np.float64)
    for start in range(0, replicates, chunk):
        rows = min(chunk, replicates - start)
        weights = _image_weights(rng, n_images, rows)  # [rows, N]
        reps[start:start + rows] = per_seed_difference(weights @ counts)
        del weights
    image_reps = _nanmean(reps, axis=1)  # [R, P]: the seeds held fixed

    # Seed level.
    finite = np.isfinite(point)
    n_finite = finite.sum(axis=0)  # [P]
    seed_rng = np.random.default_rng((seed, 1))
    if seed_level == 'student':
        mean0 = _nanmean(point, axis=0)
        spread = np.sqrt(_nanmean((point - mean0) ** 2, axis=0) * n_finite / np.maximum(n_finite - 1, 1))
        # Stratified: one uniform in each of R equal slices of (0, 1), in random order, so that the t
        # quantiles are covered evenly (less Monte Carlo error in the heavy tails of few degrees of freedom).
        u = (seed_rng.permutation(replicates) + seed_rng.random(replicates)) / replicates
        u = np.clip(u, 1e-12, 1 - 1e-12)
        df = np.maximum(n_finite - 1, 1)
        t = student_t.ppf(u[:, None], df[None, :])  # [R, P]
        seed_term = t * spread / np.sqrt(np.maximum(n_finite, 1))
        two_level = np.where(n_finite >= 2, image_reps + seed_term, np.nan)
    else:
        draws = seed_rng.integers(0, n_seeds, size=(replicates, n_seeds))
        mult = np.zeros((replicates, n_seeds))
        np.add.at(mult, (np.repeat(np.arange(replicates), n_seeds), draws.ravel()), 1.0)
        ok = np.isfinite(reps)
        total = np.einsum('rs,rsp->rp', mult, np.where(ok, reps, 0.0))
        weight = np.einsum('rs,rsp->rp', mult, ok.astype(np.float64))
        two_level = np.where((weight > 0) & (n_finite >= 2), total / np.maximum(weight, 1e-300), np.nan)

    out = []
    for p in range(n_stats):
        est = float(_nanmean(point[:, p], axis=0))
        image = _percentile_interval(est, image_reps[:, p], confidence)
        both = _percentile_interval(est, two_level[:, p], confidence)
        out.append(Difference(both.mean, both.std, both.low, both.high, both.n, seeds=int(n_finite[p]),
                              per_seed=tuple(float(v) for v in point[:, p]), image_interval=image,
                              seed_level=seed_level, min_seeds=min_seeds))
    return out


def bootstrap_paired_difference(model: list[np.ndarray], baseline: list[np.ndarray], replicates: int = 1000,
                                confidence: float = 0.95, seed: int = 0, seed_level: str = 'student',
                                min_seeds: int = MIN_SEEDS) -> tuple[Difference, list[Difference]]:
    """The difference of mIoU and of each class's IoU, ``model - baseline``, over runs paired by seed:
    :func:`paired_bootstrap` with the statistic :func:`miou_and_class_iou`.

    Args:
        model: per seed, the model's (N, 3, C) per-image counts ``(tp, gt_area, pred_area)``.
        baseline: per seed (same seeds, same order), the baseline's counts on the same N images.
        replicates, confidence, seed, seed_level, min_seeds: as :func:`paired_bootstrap`.

    Returns:
        ``(mIoU difference, [IoU difference of class c for c in range(C)])``; values are fractions.
        Each :class:`Difference` holds the interval over seeds and images (``low``, ``high``; its
        ``verdict``) and the image-only interval of these runs (``image_interval``).

    Raises:
        ValueError: no runs, unequal numbers of runs, or counts of different shapes or not (N, 3, C).
    """
    if not model or len(model) != len(baseline):
        raise ValueError(f'need the same number (>= 1) of runs of both models, got {len(model)} and {len(baseline)}')
    shapes = {np.shape(c) for c in (*model, *baseline)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[1] != 3:
        raise ValueError(f'counts must be (N, 3, C) per run and equal for both models, got {sorted(shapes)}')
    diffs = paired_bootstrap(model, baseline, miou_and_class_iou, replicates, confidence, seed, seed_level,
                             min_seeds)
    return diffs[0], diffs[1:]
