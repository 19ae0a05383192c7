"""Comparisons users can believe: every model trained on one dataset with one schedule and several
seeds, evaluated, profiled, and reported with intervals and paired differences.

The layout of a comparison's output folder ``OUT``::

    OUT/runs/<model>/seed<k>/   a training run: run.json (its config, as data), checkpoints, metrics.json
    OUT/report.md               the tables, the charts, the schedule, the command and the machine
    OUT/results.json            everything, for scripts
    OUT/compare.csv             one row per model
    OUT/miou_latency.png        mIoU (mean, 95% interval over the seeds) against forward latency
    OUT/class_differences.png   per-class IoU differences from the baseline, with bootstrap intervals

A rerun with the same arguments trains nothing that is finished and resumes what is not (training
resumes exactly, see :class:`seg.engine.SegRunner`); a run folder holding another configuration is an
error, not overwritten.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from mmengine.config import Config

from seg.analysis.comparison import Comparison, ModelResult, Run, compare_to_baseline, summarize
from seg.analysis.measure import environment
from seg.analysis.profile import profile_segmentor
from seg.analysis.report import to_csv, to_json, to_markdown
from seg.analysis.results import read_json, read_per_image_counts, read_run_metrics
from seg.analysis.specs import ModelSpec, parse_spec, safe_label, set_num_classes, spec_model
from seg.engine.config import load_config, model_without_ignore_index
from seg.engine.config_data import config_to_data
from seg.engine.precision import resolve_precision
from seg.fileio import ensure_dir
from seg.models.factory import backbone_skeleton
from seg.registry import DATASETS

from .evaluate import evaluate
from .model_io import build_model
from .train import train

__all__ = ['CompareSettings', 'run_comparison', 'training_config', 'write_report']

TRAIN_BASE = 'demo_ccnet.py'
"""The config under ``configs/`` whose data (the synthetic scenes), optimizer and LR schedule a
comparison trains with unless ``--data`` gives another dataset."""

DEFAULT_SIZES = {'demo': (96, 192)}
DEFAULT_SIZE = (512, 1024)


@dataclass
class CompareSettings:
    """Everything a comparison is run with but the models.

    Attributes:
        configs_dir: the ``configs/`` folder (the training base comes from it).
        backbone: backbone preset of the name specs (:data:`seg.models.factory.BACKBONES`).
        size: input (H, W) of the FLOPs and timings (default 96x192 for ``demo``, else 512x1024).
        device: where to time the models (``'cpu'``, ``'cuda'``...).
        batch: batch of the timed passes.
        warmup: untimed passes before timing.
        repeat: timed passes (0: no timing, no memory).
        train: train every model first (else accuracy is read from ``work_dirs`` or earlier runs).
        data: a dataset config (``train_dataloader`` and ``val_dataloader``); default the synthetic scenes.
        iters: training iterations per run.
        train_batch_size: training batch (default the data config's, else the base's).
        seeds: runs per model, seeds 0 .. seeds - 1 (initialisation, data order, augmentation).
        num_workers: data loader workers of the evaluations.
        cfg_options: overrides applied to every training config.
        work_dirs: with ``train`` off, one work dir per model to read accuracy from.
        out_dir: where runs and reports go.
        bootstrap: bootstrap replicates of the paired differences.
        checkpoint_interval: iterations between checkpoints of a run (what an interruption can lose).
        precision: 'auto' (bf16 where the hardware has it natively, else fp32), 'fp32', 'bf16' or
            'fp16': of the training runs, their evaluation and the timed passes.
        channels_last: 'auto' (with bf16 / fp16), True or False; the same three.
    """

    configs_dir: str = 'configs'
    backbone: str = 'demo'
    size: tuple[int, int] | None = None
    device: str = 'cpu'
    batch: int = 1
    warmup: int = 3
    repeat: int = 10
    train: bool = False
    data: str | None = None
    iters: int = 300
    train_batch_size: int | None = None
    seeds: int = 1
    num_workers: int = 2
    cfg_options: dict = field(default_factory=dict)
    work_dirs: list[str] | None = None
    out_dir: str | None = None
    bootstrap: int = 1000
    checkpoint_interval: int = 100
    precision: str = 'auto'
    channels_last: bool | str = 'auto'


# ------------------------------------------------------------------------------------------- configs
def _base_config(settings: CompareSettings) -> Config:
    """The training base (data, optimizer, LR, runtime), with ``--data``'s loaders when given."""
    base = load_config(Path(settings.configs_dir) / TRAIN_BASE)
    if settings.data:
        data = load_config(settings.data)
        missing = [k for k in ('train_dataloader', 'val_dataloader') if k not in data]
        if missing:
            raise ValueError(f'--data {settings.data!r} has no {" / ".join(missing)}; a dataset config defines '
                             'train_dataloader and val_dataloader (see configs/_base_/datasets/)')
        for key in ('train_dataloader', 'val_dataloader', 'val_evaluator'):
            if key in data:
                base[key] = copy.deepcopy(data[key])
        base.test_dataloader = copy.deepcopy(base.val_dataloader)
        base.test_evaluator = copy.deepcopy(base.val_evaluator)
    return base


def _dataset_info(base: Config) -> tuple[list[str], tuple[str, ...]]:
    """Class names and context pair of the validation dataset (built once: its files are checked)."""
    dataset = DATASETS.build(copy.deepcopy(base.val_dataloader.dataset))
    classes = [str(c) for c in dataset.metainfo['classes']]
    return classes, tuple(getattr(type(dataset), 'CONTEXT_PAIR', ()))


def training_config(base: Config, model: dict, settings: CompareSettings, seed: int) -> Config:
    """One run's config: ``base`` with ``model`` swapped in and the comparison's shared schedule.

    Validation during training is off (each run is evaluated once, at the end); checkpoints every
    ``settings.checkpoint_interval`` iterations so that an interrupted comparison resumes.

    Raises:
        ValueError: non-positive ``iters`` or batch.
    """
    iters = settings.iters
    if iters < 1 or (settings.train_batch_size is not None and settings.train_batch_size < 1):
        raise ValueError(f'iters and batch size must be >= 1, got iters={iters}, batch={settings.train_batch_size}')
    cfg = copy.deepcopy(base)
    cfg.model = copy.deepcopy(model)
    cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=iters, by_epoch=False)]
    cfg.train_cfg = dict(type='SegTrainLoop', max_iters=iters, val_interval=iters, val_begin=iters + 1)
    interval = max(1, min(iters, settings.checkpoint_interval))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=interval, max_keep_ckpts=2)
    cfg.default_hooks.logger.interval = min(50, iters)
    cfg.randomness = dict(seed=seed)
    cfg.precision, cfg.channels_last = settings.precision, settings.channels_last
    cfg.pop('total_batch_size', None)
    if settings.train_batch_size is not None:
        cfg.train_dataloader.batch_size = settings.train_batch_size
    if settings.cfg_options:
        cfg.merge_from_dict(settings.cfg_options)
    return load_config(cfg)  # resolved (one ignore_index) before it is compared with a stored run


def schedule_of(cfg: Config, settings: CompareSettings) -> dict:
    """The shared schedule, as the report states it."""
    optimizer = cfg.optim_wrapper.optimizer
    dataset = cfg.train_dataloader.dataset
    return dict(data=settings.data or f'{TRAIN_BASE} (synthetic scenes)', train_dataset=dataset.get('type'),
                iters=settings.iters, batch=cfg.train_dataloader.batch_size, optimizer=optimizer.get('type'),
                lr=optimizer.get('lr'), weight_decay=optimizer.get('weight_decay'),
                lr_schedule='PolyLR(power=0.9, eta_min=1e-4)',
                augmentation=[t.get('type') for t in dataset.get('pipeline') or []],
                seeds=list(range(settings.seeds)), backbone=settings.backbone,
                ignore_index=cfg.model.get('ignore_index'), precision=settings.precision,
                channels_last=settings.channels_last)


# ---------------------------------------------------------------------------------------------- runs
def _finished_run(run_dir: Path, seed: int | None) -> Run:
    counts = read_per_image_counts(run_dir)
    images, per_image = counts if counts is not None else ([], None)
    return Run(seed, str(run_dir), read_run_metrics(run_dir), per_image, images)


def _train_run(label: str, cfg: Config, run_dir: Path, settings: CompareSettings, seed: int, log) -> Run:
    """Train and evaluate one run, or take it as it is when it is finished; resume it when it is not."""
    data = json.loads(json.dumps(config_to_data(cfg)))  # what run.json holds, tuples as lists
    record_path = run_dir / 'run.json'
    record = read_json(record_path)
    if record is not None and record.get('config') != data:
        raise ValueError(f'{run_dir} holds a run of another configuration than this comparison\'s ({label!r}, '
                         f'seed {seed}); give another --out, or remove that folder to train it again')
    if record is not None and record.get('done') and (run_dir / 'metrics.json').is_file():
        log(f'   {label} seed {seed}: finished earlier, kept ({run_dir})')
        return _finished_run(run_dir, seed)
    ensure_dir(run_dir)
    record = dict(label=label, seed=seed, config=data, done=False, train_seconds=(record or {}).get('train_seconds', 0.0))
    record_path.write_text(json.dumps(record, indent=1))
    final = run_dir / f'iter_{settings.iters}.pth'
    if not final.is_file():
        resume = any(run_dir.glob('iter_*.pth'))
        log(f'   {label} seed {seed}: {"resuming" if resume else "training"} -> {run_dir}')
        start = time.perf_counter()
        train(copy.deepcopy(cfg), work_dir=str(run_dir), resume=resume)
        record['train_seconds'] = round(record['train_seconds'] + time.perf_counter() - start, 1)
    start = time.perf_counter()
    evaluate(str(final), out=str(run_dir / 'metrics.json'), num_workers=settings.num_workers,
             precision=settings.precision, channels_last=settings.channels_last)
    record.update(done=True, eval_seconds=round(time.perf_counter() - start, 1), checkpoint=str(final))
    record_path.write_text(json.dumps(record, indent=1))
    return _finished_run(run_dir, seed)


def _recorded_runs(spec: ModelSpec, index: int, settings: CompareSettings) -> list[Run]:
    """Runs of a model trained elsewhere: the work dir given, else this comparison's earlier runs."""
    if settings.work_dirs is not None:
        return [_finished_run(Path(settings.work_dirs[index]), None)]
    if settings.out_dir:
        model_dir = Path(settings.out_dir) / 'runs' / safe_label(spec.label)
        seeds = sorted(model_dir.glob('seed*'), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1)
        runs = [_finished_run(p, int(p.name[4:])) for p in seeds if p.name[4:].isdigit()]
        if runs:
            return runs
    if spec.kind == 'config':
        cfg = load_config(spec.name)
        return [_finished_run(Path(cfg.get('work_dir') or os.path.join('work_dirs', spec.label)), None)]
    return []


# ------------------------------------------------------------------------------------------ the run
def run_comparison(specs: Sequence[str | ModelSpec], settings: CompareSettings,
                   log: Callable[[str], None] = print) -> Comparison:
    """Profile, optionally train (every model, every seed), and collect the accuracy of every model.

    Raises:
        ValueError: bad specs, sizes, devices, seeds, a ``work_dirs`` list of another length, or a run
            folder holding another configuration.
    """
    parsed = [s if isinstance(s, ModelSpec) else parse_spec(s) for s in specs]
    if not parsed:
        raise ValueError('nothing to compare: give model names or config paths')
    labels = [s.label for s in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f'each model may appear once, got {labels}')
    if settings.work_dirs is not None and len(settings.work_dirs) != len(parsed):
        raise ValueError(f'{len(settings.work_dirs)} work dirs given for {len(parsed)} models; give one per model')
    if settings.train and not settings.out_dir:
        raise ValueError('training needs an output folder (the runs go to OUT/runs/<model>/seed<k>)')
    if settings.seeds < 1:
        raise ValueError(f'--seeds must be >= 1, got {settings.seeds}')
    device = torch.device(settings.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {settings.device!r} requested but CUDA is not available')
    chosen = resolve_precision(settings.precision, device, settings.channels_last)

    skeleton = backbone_skeleton(settings.backbone)
    base = _base_config(settings) if settings.train else None
    classes, pair = _dataset_info(base) if base is not None else ([], ())
    num_classes = len(classes) if base is not None else None
    models = []
    for spec in parsed:
        model = load_config(spec.name).model.to_dict() if spec.kind == 'config' else \
            spec_model(spec, skeleton, settings.backbone)
        if base is not None:  # trained on the comparison's data: its classes and its ignore index
            model = set_num_classes(model_without_ignore_index(model), num_classes)
        models.append(model)
    size = settings.size or (DEFAULT_SIZES.get(settings.backbone, DEFAULT_SIZE)
                             if any(s.kind != 'config' for s in parsed) else DEFAULT_SIZE)

    results: list[ModelResult] = []
    schedule: dict = {}
    for i, (spec, model_cfg) in enumerate(zip(parsed, models)):
        runs: list[Run] = []
        if base is not None:
            log(f'== [{i + 1}/{len(parsed)}] {spec.label}: {settings.seeds} seed(s) x {settings.iters} iterations')
            for seed in range(settings.seeds):
                cfg = training_config(base, model_cfg, settings, seed)
                schedule = schedule or schedule_of(cfg, settings)
                run_dir = Path(settings.out_dir) / 'runs' / safe_label(spec.label) / f'seed{seed}'
                runs.append(_train_run(spec.label, cfg, run_dir, settings, seed, log))
        else:
            runs = _recorded_runs(spec, i, settings)
        log(f'== [{i + 1}/{len(parsed)}] profiling {spec.label} at {size[0]}x{size[1]} on {device}')
        model = build_model(Config(dict(model=model_cfg)))
        cost = profile_segmentor(model, size, device, settings.batch, settings.warmup, settings.repeat, chosen)
        del model
        results.append(ModelResult(spec, cost, runs))

    if not classes:
        for m in results:
            for r in m.runs:
                if r.metrics:
                    classes += [c for c in r.metrics.class_iou if c not in classes]
    for m in results:
        summarize(m, classes)
    notes = compare_to_baseline(results, classes, settings.bootstrap)
    notes += [f'`{m.spec.label}`: {n}' for m in results for n in m.cost.notes]
    method = 'peak of the CPU allocator events (torch.profiler), weights and input included' \
        if device.type == 'cpu' else 'torch.cuda.max_memory_allocated, weights and input included'
    notes.append(f'Peak memory: {method} (seg.analysis.measure).')
    notes.append(f'Timed with {chosen.describe()}: the forward on the inference path (BatchNorm folded'
                 + (f', weights in {chosen.name}' if chosen.dtype is not None else '')
                 + '), the training step' + (f' under {chosen.name} autocast' if chosen.dtype is not None else '')
                 + '; training and evaluation of the runs with the same setting.')
    machine = environment(device)
    return Comparison(models=results, size=tuple(size), batch=settings.batch, device=str(device),
                      threads=torch.get_num_threads(), backbone=settings.backbone, classes=classes,
                      context_pair=pair, schedule=schedule, machine=machine, notes=notes,
                      bootstrap=settings.bootstrap)


def write_report(result: Comparison, out_dir: str, chart_x: str = 'latency') -> dict[str, str]:
    """Write ``report.md``, ``results.json``, ``compare.csv`` and the charts into ``out_dir``.

    The mIoU chart plots mIoU (mean and 95% interval over the seeds; GFLOPs when no model has an
    mIoU) against forward latency (``chart_x='latency'``, when every model was timed) or GFLOPs.

    Returns:
        ``{'report', 'json', 'csv', 'chart', ['differences']}`` -> paths.
    """
    from seg.visualization.plots import plot_class_differences, plot_tradeoff

    if chart_x not in ('latency', 'flops'):
        raise ValueError(f"chart_x must be 'latency' or 'flops', got {chart_x!r}")
    out = ensure_dir(out_dir)
    paths = {'report': str(out / 'report.md'), 'json': str(out / 'results.json'), 'csv': str(out / 'compare.csv'),
             'chart': str(out / 'miou_latency.png')}
    use_latency = chart_x == 'latency' and all(m.cost.forward_ms is not None for m in result.models)
    has_miou = any('mIoU' in m.summary for m in result.models)
    points = []
    for m in result.models:
        x = m.cost.forward_ms if use_latency else m.cost.flops / 1e9
        if has_miou and 'mIoU' in m.summary:
            iv = m.summary['mIoU']
            points.append((m.spec.label, x, iv.mean, iv.low, iv.high))
        elif not has_miou:
            points.append((m.spec.label, x, m.cost.flops / 1e9))
    h, w = result.size
    xlabel = (f'forward latency (ms, batch {result.batch}, {result.device})' if use_latency
              else f'GFLOPs (1x3x{h}x{w})')
    ylabel = 'mIoU (%), mean and 95% interval over the seeds' if has_miou else f'GFLOPs (1x3x{h}x{w})'
    plot_tradeoff(points, paths['chart'], xlabel=xlabel, ylabel=ylabel,
                  title=f'{ylabel.split(" (")[0]} vs {xlabel.split(" (")[0]} at {h}x{w}')
    rows = [(m.spec.label, [(m.class_difference[c].mean, m.class_difference[c].low, m.class_difference[c].high)
                            for c in result.classes]) for m in result.models[1:] if m.class_difference]
    images = ''
    if rows:
        paths['differences'] = str(out / 'class_differences.png')
        plot_class_differences(result.classes, rows, paths['differences'],
                               title=f'IoU difference from {result.models[0].spec.label}')
        images = '\n\n![per-class IoU differences](class_differences.png)'
    report = (to_markdown(result) + f'\n![mIoU against cost](miou_latency.png){images}\n')
    Path(paths['report']).write_text(report)
    Path(paths['json']).write_text(json.dumps(to_json(result), indent=1))
    Path(paths['csv']).write_text(to_csv(result))
    return paths
