"""Reading what runs recorded: accuracy, per-image pixel counts, and the comparison's own records.

No paper. Everything here is read from JSON (what ``tools/eval.py --out`` and a comparison write)
or from mmengine's ``scalars.json`` logs; nothing is recomputed and no file is executed.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seg.engine.logs import read_scalars

__all__ = ['RunMetrics', 'read_json', 'read_per_image_counts', 'read_run_metrics']


@dataclass
class RunMetrics:
    """Accuracy of a trained run as its work directory records it (percent).

    Attributes:
        miou, macc, aacc: summary metrics.
        class_iou: IoU per class name.
        source: the file (and step) they were read from.
        train_seconds: wall time of training when a comparison run recorded it.
    """

    miou: float
    macc: float
    aacc: float
    class_iou: dict[str, float]
    source: str
    train_seconds: float | None = None


def read_json(path: str | os.PathLike) -> dict | None:
    """A JSON object from ``path``, or None when there is no such file or it does not parse."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _from_metric_dict(values: dict, source: str) -> RunMetrics | None:
    if 'mIoU' not in values:
        return None
    class_iou = {k[4:]: float(v) for k, v in values.items() if k.startswith('IoU.')}
    return RunMetrics(float(values['mIoU']), float(values.get('mAcc', math.nan)),
                      float(values.get('aAcc', math.nan)), class_iou, source)


def _read_scalars(work_dir: Path) -> RunMetrics | None:
    try:
        _, val = read_scalars(work_dir)
    except FileNotFoundError:
        return None
    val = [e for e in val if 'mIoU' in e.values]  # sorted by step, one per step
    if not val:
        return None
    best = sorted(glob.glob(str(work_dir / 'best_mIoU_iter_*.pth')))
    if best:
        step = int(re.search(r'best_mIoU_iter_(\d+)\.pth$', best[-1]).group(1))
        hits = [e for e in val if e.step == step]
        if hits:
            return _from_metric_dict(hits[-1].values, f'{hits[-1].path} (best checkpoint, step {step})')
    last = val[-1]
    return _from_metric_dict(last.values, f'{last.path} (last validation, step {last.step})')


def read_run_metrics(work_dir: str | os.PathLike | None, payload: dict | None = None) -> RunMetrics | None:
    """The accuracy a run's work directory records, or None when it records none.

    Looks, in order, at ``metrics.json`` (what ``tools/eval.py --out`` and the comparison write),
    then at mmengine's ``<timestamp>/vis_data/scalars.json`` as :func:`seg.engine.logs.read_scalars`
    reads them (the validation of the best checkpoint ``best_mIoU_iter_N.pth``, else the last
    validation). ``run.json`` (a comparison run's record) adds the training time. ``payload``: the
    ``metrics.json`` already read (it is not read again).
    """
    if not work_dir or not os.path.isdir(work_dir):
        return None
    work = Path(work_dir)
    result = None
    payload = read_json(work / 'metrics.json') if payload is None else payload
    if payload is not None:
        values = payload.get('metrics', payload)
        result = _from_metric_dict(values if isinstance(values, dict) else {}, str(work / 'metrics.json'))
    if result is None:
        result = _read_scalars(work)
    record = read_json(work / 'run.json')
    if result is not None and record is not None:
        result.train_seconds = record.get('train_seconds')
    return result


def read_per_image_counts(work_dir: str | os.PathLike,
                          payload: dict | None = None) -> tuple[list[str], np.ndarray] | None:
    """The evaluated images and their (N, 3, C) pixel counts ``(tp, gt_area, pred_area)`` from
    ``metrics.json`` (``payload``: it, already read), or None when the run did not record them."""
    payload = read_json(Path(work_dir) / 'metrics.json') if payload is None else payload
    if payload is None or 'per_image_counts' not in payload:
        return None
    counts = np.asarray(payload['per_image_counts'], dtype=np.int64)
    return list(payload.get('images', [])), counts


_ROW = re.compile(r'^\|\s*\[`(?P<config>[^`]+\.py)`\]\([^)]*\)\s*\|(?P<cells>.*)\|\s*$')


def published_results(configs_dir: str | os.PathLike) -> dict[str, dict]:
    """The published numbers the configs' READMEs list: ``{config file name: {'mIoU': ..., 'url': ...}}``.

    Read from the tables of ``configs/<method>/README.md`` (a row per config: its link first, a
    ``published mIoU`` column, a checkpoint link); rows without a number (``—``) are left out.
    """
    found: dict[str, dict] = {}
    for readme in sorted(Path(configs_dir).glob('*/README.md')):
        header: list[str] | None = None
        for line in readme.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if line.startswith('| config'):
                header = cells
                continue
            m = _ROW.match(line.strip())
            if not m or header is None or 'published mIoU' not in header:
                continue
            value = cells[header.index('published mIoU')]
            try:
                miou = float(value)
            except ValueError:
                continue
            url = re.search(r'\((https?://[^)]+)\)', line)
            found[m.group('config')] = dict(mIoU=miou, readme=str(readme), url=url.group(1) if url else None)
    return found


def published_for(label: str, recipe: str | None, published: dict[str, dict]) -> dict | None:
    """The published result of model ``label`` trained with ``recipe``: the config of that method with the
    recipe's setting (``ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py`` -> ``fcn_r50-d8_4xb2-80k_...`` for
    ``fcn``), when ``published`` (:func:`published_results`) lists one."""
    if not recipe:
        return None
    stem = Path(recipe).name
    if '_' not in stem:
        return None
    setting = stem.split('_', 1)[1]
    method = label.split(':', 1)[0].lower()
    return published.get(f'{method}_{setting}')
