"""A comparison as people and scripts read it: markdown report, CSV, and a JSON of everything.

No paper. The report says how every number was obtained: the FLOPs counter, the latency and memory
methods, the seeds, the interval methods, the schedule, the command and the machine. A difference
from the baseline carries its verdict (:attr:`seg.analysis.stats.Difference.verdict`): "too few
seeds" below the minimum of paired seeds, else "not distinguishable" when its interval over seeds and
images contains 0; the image-only interval of these runs is shown beside it, named as such.
"""
from __future__ import annotations

import csv
import datetime
import io
import math

import torch

from .comparison import Comparison, ModelResult
from .measure import FUSED_ATTENTION_KERNELS, describe_environment, mib, si
from .stats import DISTINGUISHABLE, Difference, Interval

__all__ = ['to_csv', 'to_json', 'to_markdown']


def _num(v: float | None, digits: int = 2) -> str:
    return '' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.{digits}f}'


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def _mean_std(iv: Interval | None, digits: int = 2) -> str:
    if iv is None or math.isnan(iv.mean):
        return ''
    return f'{iv.mean:.{digits}f}' + (f' ± {iv.std:.{digits}f}' if not math.isnan(iv.std) else '')


def _ci(iv: Interval | None) -> str:
    if iv is None or math.isnan(iv.low):
        return ''
    return f'[{iv.low:.2f}, {iv.high:.2f}]'


def difference_text(iv: Interval | None) -> str:
    """``+1.23 [+0.40, +2.01]`` followed by the verdict unless it is "distinguishable": "not
    distinguishable", "too few seeds" (a :class:`Difference`), "no interval"; a plain :class:`Interval`
    gets "not distinguishable" when it contains 0."""
    if iv is None or math.isnan(iv.mean):
        return ''
    text = f'{iv.mean:+.2f} {_ci_signed(iv)}'.strip()
    if isinstance(iv, Difference):
        return text + ('' if iv.verdict == DISTINGUISHABLE else f' {iv.verdict}')
    return text + (' not distinguishable' if iv.contains_zero else '')


def _ci_signed(iv: Interval | None) -> str:
    return '' if iv is None or math.isnan(iv.low) else f'[{iv.low:+.2f}, {iv.high:+.2f}]'


def _differences_table(result: Comparison) -> str | None:
    """The paired mIoU differences: per seed, the interval over seeds and images, the verdict, and the
    image-only interval of these runs."""
    rows = [m for m in result.models[1:] if isinstance(m.difference, Difference)]
    if not rows:
        return None
    return (f'mIoU difference from `{result.models[0].spec.label}` (points), runs paired by seed:\n\n' + _table(
        ['model', 'paired seeds', 'per seed', 'mean [95% CI, seeds and images]', 'verdict',
         'image-only 95% CI (these runs)'],
        [[m.spec.label, str(m.difference.seeds), ', '.join(f'{v:+.2f}' for v in m.difference.per_seed),
          f'{m.difference.mean:+.2f} {_ci_signed(m.difference)}'.strip(), m.difference.verdict,
          _ci_signed(m.difference.image_interval)]
         for m in rows]))


def _method(result: Comparison) -> Difference | None:
    """A difference of the comparison, for the method's settings (seed level, minimum seeds)."""
    return next((m.difference for m in result.models[1:] if isinstance(m.difference, Difference)), None)


def _seeds(m: ModelResult) -> str:
    return str(sum(r.metrics is not None for r in m.runs)) if m.runs else ''


def to_markdown(result: Comparison, per_class: bool = True) -> str:
    """The comparison as markdown: the main table, the runs' costs, the metrics beyond mIoU (Boundary IoU and
    object recall, IoU by object size, what the attention modules attend to and at which distance), the
    mIoU differences, per-class IoU and its differences (a compact grid), how it was measured."""
    h, w = result.size
    trained = any(m.trained for m in result.models)
    timed = any(m.cost.forward_ms is not None for m in result.models)
    header = ['model', 'params', 'head params', f'FLOPs @1x3x{h}x{w}', 'head FLOPs']
    if timed:
        header += [f'fwd ms (bs {result.batch})', 'fwd+bwd ms', 'fwd peak MiB', 'fwd+bwd peak MiB']
    if trained:
        header += ['seeds', 'mIoU (mean ± std)', 'mIoU 95% CI', 'mIoU vs baseline [95% CI, seeds and images]',
                   'mAcc', 'aAcc']
        header += [f'IoU {c}' for c in result.context_pair]
        if any(m.runs and any(r.metrics and r.metrics.train_seconds for r in m.runs) for m in result.models):
            header.append('train min / run')
        if any(m.published for m in result.models):
            header.append('published mIoU (gap)')
    body = []
    for i, m in enumerate(result.models):
        c = m.cost
        line = [m.spec.label, si(c.params), si(c.head_params), si(c.flops), si(c.head_flops)]
        if timed:
            line += [_num(c.forward_ms, 1), _num(c.train_ms, 1), mib(c.forward_peak), mib(c.train_peak)]
        if trained:
            s = m.summary
            baseline = 'baseline' if i == 0 and m.trained else difference_text(m.difference)
            line += [_seeds(m), _mean_std(s.get('mIoU')), _ci(s.get('mIoU')), baseline, _mean_std(s.get('mAcc')),
                     _mean_std(s.get('aAcc'))]
            line += [_mean_std(s.get(f'IoU.{cn}')) for cn in result.context_pair]
            if 'train min / run' in header:
                times = [r.metrics.train_seconds for r in m.runs if r.metrics and r.metrics.train_seconds]
                line.append(_num(sum(times) / len(times) / 60, 1) if times else '')
            if 'published mIoU (gap)' in header:
                line.append(_published(m))
        body.append(line)
    parts = [_table(header, body)]
    if trained and (table := _costs_table(result)):
        parts.append(table)
    if trained and (table := _region_table(result)):
        parts.append(table)
    if trained and (table := _size_iou_table(result)):
        parts.append(table)
    if trained and (table := _attention_table(result)):
        parts.append(table)
    if trained and (table := _attention_distance_table(result)):
        parts.append(table)
    if trained and (table := _differences_table(result)):
        parts.append(table)
    if per_class and trained and result.classes:
        parts.append('Per-class IoU (%), mean ± std over the seeds:\n\n' + _table(
            ['model'] + result.classes,
            [[m.spec.label] + [_mean_std(m.summary.get(f'IoU.{cn}')) for cn in result.classes]
             for m in result.models]))
        if table := _class_difference_table(result):
            parts.append(table)
    parts.append('\n'.join(f'- {n}' for n in _notes(result)))
    return '\n\n'.join(parts) + '\n'


def compact_difference(iv: Interval | None) -> str:
    """A difference as one short cell: ``+1.23`` when it is distinguishable, ``(+0.12)`` when it is not (its
    interval contains 0, too few seeds, no interval), as the hatched cells of the per-class chart."""
    if iv is None or math.isnan(iv.mean):
        return ''
    text = f'{iv.mean:+.2f}'
    apart = iv.distinguishable if isinstance(iv, Difference) else \
        math.isfinite(iv.low) and math.isfinite(iv.high) and not iv.contains_zero
    return text if apart else f'({text})'


def _class_difference_table(result: Comparison) -> str:
    """Per-class IoU differences from the baseline as a compact models x classes grid (the intervals and
    verdicts are in results.json: ``class_difference``, ``class_difference_detail``)."""
    diffs = [m for m in result.models[1:] if m.class_difference]
    if not diffs:
        return ''
    return (f'Per-class IoU difference from `{result.models[0].spec.label}` (points; runs paired by seed, 95% '
            'bootstrap interval over the seeds and the validation images as for mIoU; in parentheses: not '
            'distinguishable, i.e. the interval contains 0 or there are too few seeds; the intervals are in '
            'results.json, `class_difference`):\n\n'
            + _table(['model'] + result.classes,
                     [[m.spec.label] + [compact_difference(m.class_difference.get(cn)) for cn in result.classes]
                      for m in diffs]))


def _summary_table(result: Comparison, names: tuple[str, ...], label=lambda n: n,
                   paired=lambda n: True) -> tuple[list[str], list[list[str]]] | None:
    """Header and rows of the ``region_summary`` statistics ``names`` that some model has: per model the
    mean ± std over the seeds and, where ``paired(name)``, the paired difference from the baseline."""
    names = [n for n in names if any(n in m.region_summary for m in result.models)]
    if not names:
        return None
    rows = []
    for i, m in enumerate(result.models):
        row = [m.spec.label]
        for n in names:
            row.append(_mean_std(m.region_summary.get(n)))
            if paired(n):
                row.append('baseline' if i == 0 else difference_text(m.region_difference.get(n)))
        rows.append(row)
    header = ['model'] + [h for n in names for h in ((f'{label(n)} (mean ± std)', f'{label(n)} vs baseline [95% CI]')
                                                    if paired(n) else (f'{label(n)} (mean ± std)',))]
    return header, rows


def _size_iou_table(result: Comparison) -> str:
    """IoU restricted to each object-size bucket's pixels: mean ± std over the seeds and the paired
    difference from the baseline, one row per model."""
    from .comparison import SIZE_IOU

    table = _summary_table(result, SIZE_IOU, label=lambda n: n.split('.', 1)[1])
    if table is None:
        return ''
    return ('IoU by object size (percent; docs/metrics.md): the IoU restricted to the ground-truth objects of '
            'each size bucket (small < 0.1% of the image, large >= 1%) and the false positives nearest to '
            'them, mean over the classes; mean ± std over the seeds, differences paired by seed with the '
            'interval over the seeds and the validation images as for mIoU:\n\n' + _table(*table))


def _published(m) -> str:
    """The published mIoU and the measured mean's gap to it, shown whatever its size."""
    if not m.published:
        return ''
    mean = m.summary.get('mIoU')
    gap = f' ({mean.mean - m.published["mIoU"]:+.2f})' if mean is not None and not math.isnan(mean.mean) else ''
    return f'{m.published["mIoU"]:.2f}{gap}'


_COSTS = (('train_s_per_iter', 's / train iter', 3), ('train_peak_gpu_mib', 'train peak GPU MiB', 0),
          ('train_peak_rss_mib', 'train peak RSS MiB', 0), ('eval_images_per_second', 'eval img/s', 1))


def _region_table(result: Comparison) -> str:
    """Beyond mIoU: mean Boundary IoU and object recall by size, over the seeds and against the baseline."""
    from .comparison import REGION_STATISTICS

    table = _summary_table(result, REGION_STATISTICS, paired=lambda n: not n.startswith('ERF'))
    if table is None:
        return ''
    return ('Where the models differ beyond mIoU (percent; docs/metrics.md): bIoU is the mean Boundary IoU '
            '(band 2% of the image diagonal), recall.<size> the share of ground-truth objects of that size found '
            '(half their pixels right; small < 0.1% of the image, large >= 1%); differences paired by seed, '
            'intervals over the seeds and the validation images as for mIoU. ERF radius_50 / radius_95: the '
            'half-width in pixels of the centred square holding 50% / 95% of the effective receptive field '
            '(input gradient of the centre pixel, Luo et al. 2016), over the seeds:\n\n' + _table(*table))


_ATTENTION_STATS = (('same_class_mass', 'same-class mass'), ('baseline', 'uniform baseline'),
                    ('entropy', 'entropy (norm.)'), ('distance', 'mean distance (feature px)'),
                    ('spread', 'gate spread (std)'), ('class_gap', 'gate class gap'))


def _attention_table(result: Comparison) -> str:
    """What each attention module attends to, mean ± std over the seeds."""
    rows = []
    for m in result.models:
        for key, stats in m.attention_summary.items():
            rows.append([m.spec.label, f'`{key}`'] + [_mean_std(stats.get(s)) for s, _ in _ATTENTION_STATS])
    if not rows:
        return ''
    return ('What the attention modules attend to (docs/metrics.md; validation images, ground truth at feature '
            'resolution): a row\'s weight on pixels of the query\'s own class against what uniform attention '
            'would give, its entropy over the valid positions (1 = uniform), the expected distance to what it '
            'attends to; for gates, the spread of the gate values and how much the mean gate differs between '
            'classes. Mean ± std over the seeds:\n\n'
            + _table(['model', 'module / map'] + [name for _, name in _ATTENTION_STATS], rows))


def distance_bucket(low: float, high: float) -> str:
    """A distance bucket's header: ``0-4 px``, ``>= 64 px`` for an open one."""
    return f'>= {low:g} px' if math.isinf(high) else f'{low:g}-{high:g} px'


def _bucket_cells(stats: dict, name: str, uniform: str) -> list[str]:
    """Per distance bucket, ``mean ± std (uniform mean)`` of the statistic ``name`` of an
    :attr:`ModelResult.attention_by_distance` entry."""
    buckets = len(stats['distance_edges']) - 1
    values, base = stats.get(name) or [None] * buckets, stats.get(uniform) or [None] * buckets
    return [_mean_std(v, 3) + (f' ({b.mean:.3f})' if b is not None and not math.isnan(b.mean) else '')
            for v, b in zip(values, base)]


def _attention_distance_table(result: Comparison) -> str:
    """Per model and attention map, its mass in each distance bucket and its same-class mass there, each
    with what uniform attention would give; one table per set of bucket edges."""
    groups: dict[tuple, list[list[str]]] = {}
    for m in result.models:
        for key, stats in m.attention_by_distance.items():
            edges = tuple(stats['distance_edges'])
            groups.setdefault(edges, []).append(
                [m.spec.label, f'`{key}`'] + _bucket_cells(stats, 'mass_by_distance', 'baseline_by_distance')
                + _bucket_cells(stats, 'same_class_mass_by_distance', 'same_class_baseline_by_distance'))
    if not groups:
        return ''
    tables = []
    for edges, rows in groups.items():
        names = [distance_bucket(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
        tables.append(_table(['model', 'module / map'] + [f'mass {n}' for n in names]
                             + [f'same-class {n}' for n in names], rows))
    return ('How far the attention modules look (docs/metrics.md): the share of a row\'s weight on the positions '
            'at each distance from the query (Euclidean, feature pixels of the attention\'s grid), and the share '
            'on positions of the query\'s own ground-truth class at that distance; in parentheses what a uniform '
            'row would put there. Mean ± std over the seeds:\n\n' + '\n\n'.join(tables))


def _costs_table(result: Comparison) -> str:
    """Per model, the mean over its runs of what each run's own logs say it cost."""
    keys = [(k, name, digits) for k, name, digits in _COSTS if any(k in r.costs for m in result.models for r in m.runs)]
    if not keys:
        return ''
    rows = []
    for m in result.models:
        row = [m.spec.label]
        for key, _, digits in keys:
            values = [r.costs[key] for r in m.runs if key in r.costs]
            row.append(_num(sum(values) / len(values), digits) if values else '')
        rows.append(row)
    return ('The runs\' own costs (mean over the runs, from each run\'s logs: mmengine\'s per-iteration time, '
            'its logged GPU memory or the peak resident memory of the run\'s process, the evaluation\'s speed):'
            '\n\n' + _table(['model'] + [name for _, name, _ in keys], rows))


def _notes(result: Comparison) -> list[str]:
    h, w = result.size
    notes = [f'FLOPs at 1x3x{h}x{w}, counted by torch.utils.flop_counter.FlopCounterMode: 2 per multiply-add of '
             'convolutions, matrix products and the fused attention kernels '
             f'({", ".join(FUSED_ATTENTION_KERNELS)}); inference forward, no auxiliary head.',
             f'Device {result.device}, {result.threads} threads, torch {torch.__version__}; latency is the median '
             'after warm-up; fwd = eval forward under no_grad, fwd+bwd = training step (losses of all '
             'supervised outputs, backward).',
             'params include the auxiliary head; head = decode head alone.']
    if any(m.trained for m in result.models):
        notes.append('Accuracy in percent over the seeds: mean ± sample std, and the 95% Student-t interval of the '
                     'mean.')
        method = _method(result)
        if method is not None:
            seed_level = ('the seed level drawn from Student\'s t with (seeds - 1) degrees of freedom scaled by '
                          'the std of the per-seed differences' if method.seed_level == 'student'
                          else 'the seeds resampled with replacement')
            notes.append('"vs baseline": the difference from the first model, the mean over the seeds of the '
                         'per-seed differences (runs paired by seed), with its 95% percentile interval over '
                         f'{result.bootstrap} bootstrap replicates at two levels: the validation images drawn with '
                         f'replacement (one draw for every run), {seed_level} (seg.analysis.stats.paired_bootstrap). '
                         'An interval containing 0 is "not distinguishable"; with fewer than '
                         f'{method.min_seeds} paired seeds no difference is called distinguishable ("too few '
                         'seeds"). The image-only interval holds the seeds fixed: how much these runs\' difference '
                         'depends on the images, not whether the models differ.')
    notes += result.notes
    sources = [f'`{m.spec.label}`: ' + '; '.join(r.metrics.source for r in m.runs if r.metrics)
               for m in result.models if m.trained]
    if sources and not result.schedule:
        notes.append('Accuracy read from: ' + '; '.join(sources) + '.')
    if result.schedule:
        notes.append('Schedule (the same for every model): ' + ', '.join(f'{k}={v}' for k, v in result.schedule.items()))
    if result.machine:
        notes.append('Machine: ' + describe_environment(result.machine))
    if result.command:
        notes.append(f'Command: `{result.command}`')
    notes.append(f'Measured {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}.')
    return notes


def to_csv(result: Comparison) -> str:
    """One row per model: exact integers (params, FLOPs, bytes), accuracy mean / std / interval, differences."""
    buf = io.StringIO()
    h, w = result.size
    fields = ['model', 'kind', 'params', 'head_params', 'flops', 'head_flops', 'input_h', 'input_w', 'batch', 'device',
              'forward_ms', 'train_ms', 'forward_peak_bytes', 'train_peak_bytes', 'seeds', 'mIoU', 'mIoU_std',
              'mIoU_low', 'mIoU_high', 'mIoU_diff', 'mIoU_diff_low', 'mIoU_diff_high', 'mIoU_diff_verdict',
              'mIoU_diff_seeds', 'mIoU_diff_per_seed', 'mIoU_diff_image_low', 'mIoU_diff_image_high', 'mAcc',
              'aAcc'] + \
        [f'IoU.{c}' for c in result.classes] + ['metrics_source', 'work_dir']
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    for m in result.models:
        c, s, d = m.cost, m.summary, m.difference
        miou = s.get('mIoU')
        row = dict(model=m.spec.label, kind=m.spec.kind, params=c.params, head_params=c.head_params, flops=c.flops,
                   head_flops=c.head_flops, input_h=h, input_w=w, batch=c.batch, device=c.device,
                   forward_ms=_num(c.forward_ms, 3), train_ms=_num(c.train_ms, 3),
                   forward_peak_bytes=c.forward_peak if c.forward_peak is not None else '',
                   train_peak_bytes=c.train_peak if c.train_peak is not None else '', seeds=_seeds(m),
                   mIoU=_num(miou.mean) if miou else '', mIoU_std=_num(miou.std) if miou else '',
                   mIoU_low=_num(miou.low) if miou else '', mIoU_high=_num(miou.high) if miou else '',
                   mIoU_diff=_num(d.mean) if d else '', mIoU_diff_low=_num(d.low) if d else '',
                   mIoU_diff_high=_num(d.high) if d else '',
                   mIoU_diff_verdict=d.verdict if isinstance(d, Difference) else '',
                   mIoU_diff_seeds=d.seeds if isinstance(d, Difference) else '',
                   mIoU_diff_per_seed=' '.join(_num(v) for v in d.per_seed) if isinstance(d, Difference) else '',
                   mIoU_diff_image_low=_num(d.image_interval.low) if isinstance(d, Difference) and d.image_interval
                   else '',
                   mIoU_diff_image_high=_num(d.image_interval.high) if isinstance(d, Difference) and d.image_interval
                   else '',
                   mAcc=_num(s['mAcc'].mean) if 'mAcc' in s else '', aAcc=_num(s['aAcc'].mean) if 'aAcc' in s else '',
                   metrics_source='; '.join(r.metrics.source for r in m.runs if r.metrics),
                   work_dir='; '.join(r.work_dir or '' for r in m.runs))
        for cn in result.classes:
            row[f'IoU.{cn}'] = _num(s[f'IoU.{cn}'].mean) if f'IoU.{cn}' in s else ''
        writer.writerow(row)
    return buf.getvalue()


def _distinguishable(d: Interval | None) -> bool | None:
    if d is None:
        return None
    return d.distinguishable if isinstance(d, Difference) else not d.contains_zero


def _distance_json(stats: dict) -> dict:
    """An :attr:`ModelResult.attention_by_distance` entry as data: the edges (``None`` for an open last one)
    and, per statistic, one interval per bucket."""
    out = {'distance_edges': [None if math.isinf(e) else e for e in stats['distance_edges']],
           'runs': stats.get('runs')}
    out.update({k: [iv.as_dict() for iv in v] for k, v in stats.items() if k not in out})
    return out


def to_json(result: Comparison) -> dict:
    """Everything of the comparison as plain data (NaN as None), for scripts."""
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    models = []
    for m in result.models:
        c = m.cost
        models.append(dict(
            label=m.spec.label, kind=m.spec.kind, name=m.spec.name, options=m.spec.options,
            cost=dict(params=c.params, head_params=c.head_params, flops=c.flops, head_flops=c.head_flops,
                      forward_ms=c.forward_ms, train_ms=c.train_ms, forward_peak_bytes=c.forward_peak,
                      train_peak_bytes=c.train_peak, notes=c.notes),
            runs=[dict(seed=r.seed, work_dir=r.work_dir, source=r.metrics.source if r.metrics else None,
                       mIoU=r.metrics.miou if r.metrics else None, mAcc=r.metrics.macc if r.metrics else None,
                       aAcc=r.metrics.aacc if r.metrics else None,
                       class_iou=r.metrics.class_iou if r.metrics else None,
                       train_seconds=r.metrics.train_seconds if r.metrics else None, costs=r.costs) for r in m.runs],
            published=m.published,
            region_summary={k: iv.as_dict() for k, iv in m.region_summary.items()},
            attention_summary={k: {s: iv.as_dict() for s, iv in v.items()} for k, v in m.attention_summary.items()},
            attention_by_distance={k: _distance_json(v) for k, v in m.attention_by_distance.items()},
            region_difference={k: iv.detail() | iv.as_dict() for k, iv in m.region_difference.items()},
            summary={k: iv.as_dict() for k, iv in m.summary.items()},
            difference=m.difference.as_dict() if m.difference else None,
            distinguishable=_distinguishable(m.difference),
            verdict=m.difference.verdict if isinstance(m.difference, Difference) else None,
            difference_detail=m.difference.detail() if isinstance(m.difference, Difference) else None,
            class_difference={k: iv.as_dict() for k, iv in m.class_difference.items()},
            class_difference_detail={k: iv.detail() for k, iv in m.class_difference.items()
                                     if isinstance(iv, Difference)}))
    return clean(dict(models=models, baseline=result.models[0].spec.label if result.models else None,
                      classes=result.classes, context_pair=list(result.context_pair), size=list(result.size),
                      batch=result.batch, device=result.device, threads=result.threads, backbone=result.backbone,
                      schedule=result.schedule, machine=result.machine, notes=result.notes, command=result.command,
                      bootstrap_replicates=result.bootstrap))
