"""The result of a comparison: per model its cost, its runs (one per seed), their summary over the seeds
and its paired difference from the baseline (the first model).

No paper. Accuracies are in percent (as the evaluation reports them); the summaries are
:class:`seg.analysis.stats.Interval` s: mean, sample std and the 95% Student-t interval over the
seeds; the differences are :class:`seg.analysis.stats.Difference` s from
:func:`seg.analysis.stats.bootstrap_paired_difference`: runs paired by seed, an interval over the seeds
and the validation images (the verdict's), the image-only interval of these runs, and "too few seeds"
below :data:`seg.analysis.stats.MIN_SEEDS` paired seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .profile import CostReport
from .results import RunMetrics
from .specs import ModelSpec
from .stats import MIN_SEEDS, Difference, Interval, bootstrap_paired_difference, mean_interval

__all__ = ['ATTENTION_BY_DISTANCE', 'Comparison', 'ModelResult', 'Run', 'SIZE_IOU', 'attention_distance_summary',
           'compare_to_baseline', 'summarize']

SUMMARY_KEYS = ('mIoU', 'mAcc', 'aAcc')


@dataclass
class Run:
    """One trained (or recorded) run of a model.

    Attributes:
        seed: the seed it was trained with (None for a work dir given by the user).
        work_dir: where it lives.
        metrics: its recorded accuracy (percent), or None.
        counts: its (N, 3, C) per-image pixel counts, when its evaluation recorded them.
        images: the evaluated images, in the order of ``counts``.
        region_counts: its per-image counts of the metrics beyond mIoU (``boundary`` [N, 2, C], ``objects``
            [N, 3, 2, C], ...: :mod:`seg.evaluation.region_metrics`), when its evaluation computed them.
        erf: its effective receptive field's ``radius_50`` / ``radius_95`` (px, chessboard) and ``area_*``
            (:func:`seg.evaluation.erf.erf_radius`), when the comparison measured it.
        attention: per attention module and map (``'decode_head.context/composed'``), what its rows attend
            to (same-class mass, its uniform baseline, normalised entropy, mean distance; by distance
            bucket, the lists of :data:`ATTENTION_BY_DISTANCE` and their ``distance_edges``) or a gate's
            spread and class gap (:mod:`seg.evaluation.attention_stats`), when the comparison measured it.
        costs: what the run's own logs say it cost: ``train_s_per_iter``, ``train_peak_gpu_mib`` (mmengine's
            logged ``torch.cuda.max_memory_allocated``) or ``train_peak_rss_mib`` (its process), and
            ``eval_images_per_second``.
    """

    seed: int | None
    work_dir: str | None
    metrics: RunMetrics | None
    counts: np.ndarray | None = None
    images: list[str] = field(default_factory=list)
    costs: dict = field(default_factory=dict)
    region_counts: dict = field(default_factory=dict)
    erf: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)


@dataclass
class ModelResult:
    """One model of a comparison.

    Attributes:
        spec: how it was named.
        cost: parameters, FLOPs, latency, memory.
        runs: its runs, one per seed.
        summary: ``mIoU``, ``mAcc``, ``aAcc`` and ``IoU.<class>`` over the runs (percent).
        difference: its mIoU minus the baseline's (points): the mean over the seeds of the paired
            per-seed differences, its interval over seeds and images, its verdict, the per-seed values
            and the image-only interval; None for the baseline or when the runs recorded no per-image
            counts.
        class_difference: the same per class name.
        region_summary / region_difference: the metrics beyond mIoU (:data:`REGION_STATISTICS`: mean
            Boundary IoU, object recall by size; :data:`SIZE_IOU`: the IoU restricted to each object-size
            bucket's pixels) over the seeds, and their paired differences from the baseline, as for mIoU.
        attention_summary: per attention module and map, each scalar statistic of its runs' ``attention``
            (same-class mass, uniform baseline, entropy, distance; a gate's spread and class gap) over the
            seeds.
        attention_by_distance: per attention module and map, the by-distance statistics of its runs
            (:func:`attention_distance_summary`): ``distance_edges`` (pixels of the attention's grid, the
            last one ``inf``) and, per statistic of :data:`ATTENTION_BY_DISTANCE`, one interval over the
            seeds per distance bucket.
        published: the published result of this model under the comparison's recipe (mmsegmentation's
            model zoo, from ``configs/<method>/README.md``: ``mIoU``, ``url``), or None.
    """

    spec: ModelSpec
    cost: CostReport
    runs: list[Run] = field(default_factory=list)
    published: dict | None = None
    region_summary: dict[str, Interval] = field(default_factory=dict)
    region_difference: dict[str, Difference] = field(default_factory=dict)
    attention_summary: dict[str, dict[str, Interval]] = field(default_factory=dict)
    attention_by_distance: dict[str, dict] = field(default_factory=dict)
    summary: dict[str, Interval] = field(default_factory=dict)
    difference: Difference | None = None
    class_difference: dict[str, Difference] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return any(r.metrics is not None for r in self.runs)


@dataclass
class Comparison:
    """All models plus what the report's header and notes need."""

    models: list[ModelResult]
    size: tuple[int, int]
    batch: int
    device: str
    threads: int
    backbone: str
    classes: list[str] = field(default_factory=list)
    context_pair: tuple[str, ...] = ()
    schedule: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    command: str = ''
    bootstrap: int = 1000


def summarize(model: ModelResult, classes: list[str]) -> None:
    """Fill ``model.summary`` from its runs' metrics: mean, std and 95% interval over the seeds."""
    runs = [r.metrics for r in model.runs if r.metrics is not None]
    if not runs:
        model.summary = {}
        return
    values = {'mIoU': [m.miou for m in runs], 'mAcc': [m.macc for m in runs], 'aAcc': [m.aacc for m in runs]}
    for name in classes:
        values[f'IoU.{name}'] = [m.class_iou.get(name, math.nan) for m in runs]
    model.summary = {k: mean_interval(v) for k, v in values.items()}


def compare_to_baseline(models: list[ModelResult], classes: list[str], replicates: int = 1000,
                        seed: int = 0, seed_level: str = 'student', min_seeds: int = MIN_SEEDS) -> list[str]:
    """Fill each model's ``difference`` / ``class_difference`` against ``models[0]``, pairing runs by seed
    (the seeds both models have), with :func:`seg.analysis.stats.bootstrap_paired_difference`.

    Args:
        models: the baseline first.
        classes: class names, in the order of the counts.
        replicates, seed, seed_level, min_seeds: of the bootstrap.

    Returns:
        Notes on the models that could not be compared (no per-image counts, other images, other seeds).
    """
    notes: list[str] = []
    if not models:
        return notes
    base = models[0]
    base_runs = {r.seed: r for r in base.runs if r.counts is not None}
    for model in models[1:]:
        runs = {r.seed: r for r in model.runs if r.counts is not None}
        seeds = sorted(s for s in runs if s in base_runs)
        if not seeds:
            if model.trained:
                notes.append(f'`{model.spec.label}`: no per-image counts paired by seed with the baseline; '
                             'no difference computed')
            continue
        if any(runs[s].images != base_runs[s].images or runs[s].counts.shape != base_runs[s].counts.shape
               for s in seeds):
            notes.append(f'`{model.spec.label}` was evaluated on other images than the baseline; '
                         'no difference computed')
            continue
        miou, per_class = bootstrap_paired_difference([runs[s].counts for s in seeds],
                                                      [base_runs[s].counts for s in seeds], replicates, seed=seed,
                                                      seed_level=seed_level, min_seeds=min_seeds)
        model.difference = _percent(miou)
        model.class_difference = {name: _percent(iv) for name, iv in zip(classes, per_class)}
    return notes


def _region_statistics():
    from seg.evaluation.region_metrics import mean_pair_iou, size_recall

    return {'boundary': (('bIoU',), mean_pair_iou),
            'objects': (('recall.small', 'recall.medium', 'recall.large'), size_recall),
            'size_iou': (SIZE_IOU, mean_pair_iou)}


REGION_STATISTICS = ('bIoU', 'recall.small', 'recall.medium', 'recall.large', 'ERF radius_50', 'ERF radius_95')
"""The metrics beyond mIoU a comparison reports: mean Boundary IoU and object recall by size (percent,
with paired differences), and the effective receptive field's radii (pixels, over the seeds)."""

SIZE_IOU = ('sizeIoU.small', 'sizeIoU.medium', 'sizeIoU.large')
"""The IoU restricted to the pixels of each object-size bucket (mean over the classes, percent, from a run's
``size_iou`` counts [N, 3, 2, C]: :func:`seg.evaluation.objects.size_iou_counts`), with paired differences
like :data:`REGION_STATISTICS`; the report gives them a table of their own."""

ATTENTION_BY_DISTANCE = ('mass_by_distance', 'baseline_by_distance', 'same_class_mass_by_distance',
                         'same_class_baseline_by_distance')
"""The per-distance-bucket statistics of an attention map (:func:`seg.evaluation.attention_stats.attention_row_stats`,
means over the rows): the row's mass in each bucket and what a uniform row puts there, and the same for the mass
on the query's own class."""


def _edges(values) -> tuple[float, ...]:
    """Distance edges as a run's ``attention.json`` stores them (``None``: no upper edge) -> floats."""
    return tuple(math.inf if v is None else float(v) for v in values)


def attention_distance_summary(runs: list[dict]) -> dict:
    """The by-distance statistics of one attention map over the seeds.

    Args:
        runs: per run, the map's entry of its ``attention`` (``distance_edges`` and the lists of
            :data:`ATTENTION_BY_DISTANCE`, one value per bucket); entries without ``distance_edges`` are
            skipped.

    Returns:
        ``{}`` when no run has them; else ``distance_edges`` (tuple of floats, the last one may be ``inf``;
        the runs with the first run's edges are kept, the others left out), ``runs`` (how many were
        kept) and, per statistic, ``[Interval per bucket]``: :func:`seg.analysis.stats.mean_interval`
        over the kept runs (NaN values left out).
    """
    runs = [r for r in runs if r.get('distance_edges')]
    if not runs:
        return {}
    edges = _edges(runs[0]['distance_edges'])
    kept = [r for r in runs if _edges(r['distance_edges']) == edges]
    out: dict = {'distance_edges': edges, 'runs': len(kept)}
    for name in ATTENTION_BY_DISTANCE:
        values = [[math.nan if v is None else float(v) for v in r[name]] for r in kept
                  if len(r.get(name) or ()) == len(edges) - 1]
        if values:
            out[name] = [mean_interval(column) for column in zip(*values)]
    return out


def compare_regions(models: list[ModelResult], replicates: int = 1000, seed: int = 0,
                    seed_level: str = 'student', min_seeds: int = MIN_SEEDS) -> None:
    """Fill each model's ``region_summary`` (mean and t-interval over its runs) and, against ``models[0]``
    with the runs paired by seed, ``region_difference`` (:func:`seg.analysis.stats.paired_bootstrap` on
    the per-image counts, as for mIoU). Models whose runs recorded no such counts are left as they are.
    Also each model's ``attention_summary`` and ``attention_by_distance`` from its runs' ``attention``
    (over the seeds; no paired difference: these are not per-image counts)."""
    from seg.analysis.stats import paired_bootstrap

    stats = _region_statistics()
    base = models[0] if models else None
    for model in models:
        maps = sorted({k for r in model.runs for k in r.attention})
        for key in maps:
            entries = [r.attention[key] for r in model.runs if key in r.attention]
            scalars = [{s: v for s, v in e.items() if isinstance(v, (int, float))} for e in entries]
            names = sorted({s for e in scalars for s in e})
            model.attention_summary[key] = {s: mean_interval([e[s] for e in scalars if s in e]) for s in names}
            by_distance = attention_distance_summary(entries)
            if by_distance:
                model.attention_by_distance[key] = by_distance
        for key in ('radius_50', 'radius_95'):
            values = [r.erf[key] for r in model.runs if key in r.erf]
            if values:
                model.region_summary[f'ERF {key}'] = mean_interval(values)
        for key, (names, fn) in stats.items():
            runs = [r for r in model.runs if key in r.region_counts]
            if not runs:
                continue
            values = np.stack([np.atleast_1d(fn(np.asarray(r.region_counts[key]).sum(0))) for r in runs])
            for j, name in enumerate(names):
                model.region_summary[name] = mean_interval(values[:, j].tolist())
            if model is base or base is None:
                continue
            base_runs = {r.seed: r for r in base.runs if key in r.region_counts}
            own = {r.seed: r for r in runs}
            seeds = sorted(s for s in own if s in base_runs and own[s].images == base_runs[s].images)
            if not seeds:
                continue
            diffs = paired_bootstrap([np.asarray(own[s].region_counts[key]) for s in seeds],
                                     [np.asarray(base_runs[s].region_counts[key]) for s in seeds], fn, replicates,
                                     seed=seed, seed_level=seed_level, min_seeds=min_seeds)
            for name, diff in zip(names, diffs):
                model.region_difference[name] = diff


def _percent(iv: Difference) -> Difference:
    return iv.scaled(100.0)
