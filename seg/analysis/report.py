"""A comparison as people and scripts read it: markdown report, CSV, and a JSON of everything.

No paper. The report says how every number was obtained: the FLOPs counter, the latency and memory
methods, the seeds, the interval methods, the schedule, the command and the machine. A difference
from the baseline whose interval contains 0 is reported as "not distinguishable".
"""
from __future__ import annotations

import csv
import datetime
import io
import math

import torch

from .comparison import Comparison, ModelResult
from .measure import FUSED_ATTENTION_KERNELS, describe_environment, mib, si
from .stats import Interval

__all__ = ['to_csv', 'to_json', 'to_markdown']


def _num(v: float | None, digits: int = 2) -> str:
    return '' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.{digits}f}'


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def _mean_std(iv: Interval | None) -> str:
    if iv is None or math.isnan(iv.mean):
        return ''
    return f'{iv.mean:.2f}' + (f' ± {iv.std:.2f}' if not math.isnan(iv.std) else '')


def _ci(iv: Interval | None) -> str:
    if iv is None or math.isnan(iv.low):
        return ''
    return f'[{iv.low:.2f}, {iv.high:.2f}]'


def difference_text(iv: Interval | None) -> str:
    """``+1.23 [0.40, 2.01]``, with "not distinguishable" when the interval contains 0."""
    if iv is None or math.isnan(iv.mean):
        return ''
    text = f'{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]'
    return text + (' not distinguishable' if iv.contains_zero else '')


def _seeds(m: ModelResult) -> str:
    return str(sum(r.metrics is not None for r in m.runs)) if m.runs else ''


def to_markdown(result: Comparison, per_class: bool = True) -> str:
    """The comparison as markdown: the main table, per-class IoU (and differences), how it was measured."""
    h, w = result.size
    trained = any(m.trained for m in result.models)
    timed = any(m.cost.forward_ms is not None for m in result.models)
    header = ['model', 'params', 'head params', f'FLOPs @1x3x{h}x{w}', 'head FLOPs']
    if timed:
        header += [f'fwd ms (bs {result.batch})', 'fwd+bwd ms', 'fwd peak MiB', 'fwd+bwd peak MiB']
    if trained:
        header += ['seeds', 'mIoU (mean ± std)', 'mIoU 95% CI', 'mIoU vs baseline [95% CI]', 'mAcc', 'aAcc']
        header += [f'IoU {c}' for c in result.context_pair]
        if any(m.runs and any(r.metrics and r.metrics.train_seconds for r in m.runs) for m in result.models):
            header.append('train min / run')
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
        body.append(line)
    parts = [_table(header, body)]
    if per_class and trained and result.classes:
        parts.append('Per-class IoU (%), mean ± std over the seeds:\n\n' + _table(
            ['model'] + result.classes,
            [[m.spec.label] + [_mean_std(m.summary.get(f'IoU.{cn}')) for cn in result.classes]
             for m in result.models]))
        diffs = [m for m in result.models[1:] if m.class_difference]
        if diffs:
            parts.append(f'Per-class IoU difference from `{result.models[0].spec.label}` (points, 95% bootstrap '
                         'interval over the validation images, runs paired by seed):\n\n' + _table(
                             ['model'] + result.classes,
                             [[m.spec.label] + [difference_text(m.class_difference.get(cn)) for cn in result.classes]
                              for m in diffs]))
    parts.append('\n'.join(f'- {n}' for n in _notes(result)))
    return '\n\n'.join(parts) + '\n'


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
                     'mean. "vs baseline": the difference from the first model, averaged over the seeds with the '
                     f'runs paired by seed, and its 95% percentile interval over {result.bootstrap} bootstrap '
                     'resamples of the validation images; an interval containing 0 is "not distinguishable".')
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
              'mIoU_low', 'mIoU_high', 'mIoU_diff', 'mIoU_diff_low', 'mIoU_diff_high', 'mAcc', 'aAcc'] + \
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
                   mAcc=_num(s['mAcc'].mean) if 'mAcc' in s else '', aAcc=_num(s['aAcc'].mean) if 'aAcc' in s else '',
                   metrics_source='; '.join(r.metrics.source for r in m.runs if r.metrics),
                   work_dir='; '.join(r.work_dir or '' for r in m.runs))
        for cn in result.classes:
            row[f'IoU.{cn}'] = _num(s[f'IoU.{cn}'].mean) if f'IoU.{cn}' in s else ''
        writer.writerow(row)
    return buf.getvalue()


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
                       train_seconds=r.metrics.train_seconds if r.metrics else None) for r in m.runs],
            summary={k: iv.as_dict() for k, iv in m.summary.items()},
            difference=m.difference.as_dict() if m.difference else None,
            distinguishable=(not m.difference.contains_zero) if m.difference else None,
            class_difference={k: iv.as_dict() for k, iv in m.class_difference.items()}))
    return clean(dict(models=models, baseline=result.models[0].spec.label if result.models else None,
                      classes=result.classes, context_pair=list(result.context_pair), size=list(result.size),
                      batch=result.batch, device=result.device, threads=result.threads, backbone=result.backbone,
                      schedule=result.schedule, machine=result.machine, notes=result.notes, command=result.command,
                      bootstrap_replicates=result.bootstrap))
