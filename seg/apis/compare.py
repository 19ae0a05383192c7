"""Comparisons users can believe: every model trained on one dataset with one schedule and several
seeds, evaluated, profiled, and reported with intervals and paired differences.

A comparison trains with a **recipe**: a training config (default ``configs/demo_ccnet.py``, the CPU
demo; or any published one, e.g. ``configs/ccnet/ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py``) that
gives the data, optimizer, schedule, batch, crop, augmentation, backbone and its ImageNet weights;
each model swaps in only its decode head (or backbone plug-in) and options. ``--data``, ``--iters``
and ``--backbone`` override those parts. The runs are jobs (:mod:`seg.apis.compare_jobs`): planned as
files, executed here K at a time or by any launcher, then collected.

The layout of a comparison's output folder ``OUT``::

    OUT/plan.json, OUT/plan.sh  the models, the settings and one tools/train.py command per run
    OUT/runs/<model>/seed<k>/   a training run: config.json (its resolved config), run.json (its record),
                                train.log, status.json, checkpoints, metrics.json (its evaluation)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from mmengine.config import Config

from seg.analysis.comparison import (
    Comparison,
    ModelResult,
    Run,
    compare_regions,
    compare_to_baseline,
    summarize,
)
from seg.analysis.measure import environment
from seg.analysis.profile import profile_segmentor
from seg.analysis.report import to_csv, to_json, to_markdown
from seg.analysis.results import (
    published_for,
    published_results,
    read_json,
    read_per_image_counts,
    read_run_metrics,
)
from seg.analysis.specs import ModelSpec, parse_spec, safe_label, set_num_classes, spec_model
from seg.engine.config import load_config, model_without_ignore_index
from seg.engine.config_data import config_from_data, config_to_data
from seg.engine.precision import resolve_precision
from seg.evaluation.region_metrics import REGION_METRICS
from seg.fileio import ensure_dir
from seg.models.factory import backbone_skeleton
from seg.registry import DATASETS

from .compare_jobs import (
    LaunchSettings,
    PlannedRun,
    execute_plan,
    planned_runs,
    read_plan,
    run_status,
    write_plan,
)
from .evaluate import evaluate
from .model_analysis import ANALYSIS_FORMAT, MODEL_ANALYSES, checkpoint_analyses
from .model_io import build_model

__all__ = ['CompareSettings', 'LaunchSettings', 'collect_comparison', 'plan_comparison', 'run_comparison',
           'training_config', 'write_report']

TRAIN_BASE = 'demo_ccnet.py'
"""The config under ``configs/`` whose data (the synthetic scenes), optimizer and LR schedule a
comparison trains with unless ``--data`` gives another dataset."""

DEFAULT_SIZES = {'demo': (96, 192)}
DEFAULT_SIZE = (512, 1024)


@dataclass
class CompareSettings:
    """Everything a comparison is run with but the models.

    Attributes:
        configs_dir: the ``configs/`` folder (the default recipe comes from it).
        recipe: the training config every run starts from (default ``configs/demo_ccnet.py``).
        backbone: backbone preset of the name specs (:data:`seg.models.factory.BACKBONES`); None: the
            recipe's own model (the demo network for the default recipe).
        size: input (H, W) of the FLOPs and timings (default 96x192 for ``demo``, else 512x1024).
        device: where to time the models (``'cpu'``, ``'cuda'``...).
        batch: batch of the timed passes.
        warmup: untimed passes before timing.
        repeat: timed passes (0: no timing, no memory).
        train: train every model first (else accuracy is read from ``work_dirs`` or earlier runs).
        data: a dataset config (``train_dataloader`` and ``val_dataloader``); default the synthetic scenes.
        iters: training iterations per run (None: the recipe's own schedule; 300 for the demo recipe).
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
        plan_only: write the plan (``OUT/plan.json``, ``OUT/plan.sh``, the runs' configs) and stop.
        launch: how :func:`seg.apis.compare_jobs.execute_plan` runs the jobs (parallel, torchrun).
    """

    configs_dir: str = 'configs'
    recipe: str | None = None
    backbone: str | None = None
    size: tuple[int, int] | None = None
    device: str = 'cpu'
    batch: int = 1
    warmup: int = 3
    repeat: int = 10
    train: bool = False
    data: str | None = None
    iters: int | None = None
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
    plan_only: bool = False
    launch: LaunchSettings = field(default_factory=LaunchSettings)

    @property
    def demo_recipe(self) -> bool:
        return self.recipe is None or Path(self.recipe).name == TRAIN_BASE


# ------------------------------------------------------------------------------------------- configs
def _base_config(settings: CompareSettings) -> Config:
    """The recipe (data, optimizer, schedule, runtime, model), with ``--data``'s loaders when given."""
    base = load_config(settings.recipe or Path(settings.configs_dir) / TRAIN_BASE)
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
    """One run's config: the recipe ``base`` with ``model`` swapped in and the comparison's settings.

    The demo recipe, or ``settings.iters``, sets the schedule: that many iterations of PolyLR (power
    0.9). Another recipe keeps its own optimizer, schedule and batch. Validation during training is off
    (each run is evaluated once, at the end); checkpoints every ``settings.checkpoint_interval``
    iterations so that an interrupted run resumes.

    Raises:
        ValueError: non-positive ``iters`` or batch.
    """
    iters = _iters(base, settings)
    if iters < 1 or (settings.train_batch_size is not None and settings.train_batch_size < 1):
        raise ValueError(f'iters and batch size must be >= 1, got iters={iters}, batch={settings.train_batch_size}')
    cfg = copy.deepcopy(base)
    cfg.model = copy.deepcopy(model)
    if settings.demo_recipe or settings.iters is not None:
        cfg.max_iters = iters
        cfg.param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=iters, by_epoch=False)]
    cfg.train_cfg = dict(type='SegTrainLoop', max_iters=iters, val_interval=iters, val_begin=iters + 1)
    interval = max(1, min(iters, settings.checkpoint_interval))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=interval, max_keep_ckpts=2)
    cfg.default_hooks.logger.interval = min(50, iters)
    cfg.randomness = dict(seed=seed)
    cfg.precision, cfg.channels_last = settings.precision, settings.channels_last
    if settings.demo_recipe:
        cfg.pop('total_batch_size', None)
    if settings.train_batch_size is not None:
        cfg.pop('total_batch_size', None)
        cfg.train_dataloader.batch_size = settings.train_batch_size
    if settings.cfg_options:
        cfg.merge_from_dict(settings.cfg_options)
    return load_config(cfg)  # resolved (one ignore_index) before it is compared with a stored run


def _iters(base: Config, settings: CompareSettings) -> int:
    if settings.iters is not None:
        return settings.iters
    return 300 if settings.demo_recipe else int(base.train_cfg.max_iters)


def schedule_of(cfg: Config, settings: CompareSettings) -> dict:
    """The shared schedule, as the report states it, with the weights the backbone started from."""
    optimizer = cfg.optim_wrapper.optimizer
    dataset = cfg.train_dataloader.dataset
    schedulers = cfg.get('param_scheduler') or []
    schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
    return dict(recipe=settings.recipe or f'configs/{TRAIN_BASE}',
                data=settings.data or (f'{TRAIN_BASE} (synthetic scenes)' if settings.demo_recipe else 'the recipe\'s'),
                train_dataset=dataset.get('type'), iters=cfg.train_cfg.max_iters,
                batch=cfg.get('total_batch_size') or cfg.train_dataloader.batch_size,
                optimizer=optimizer.get('type'), lr=optimizer.get('lr'), weight_decay=optimizer.get('weight_decay'),
                momentum=optimizer.get('momentum'),
                lr_schedule=', '.join(f"{s.get('type')}(power={s.get('power')}, eta_min={s.get('eta_min')})"
                                      for s in schedulers),
                augmentation=[t.get('type') for t in dataset.get('pipeline') or []],
                seeds=list(range(settings.seeds)), backbone=settings.backbone or 'the recipe\'s',
                pretrained=(cfg.model.get('backbone') or {}).get('pretrained') or 'none (from scratch)',
                ignore_index=cfg.model.get('ignore_index'), precision=settings.precision,
                channels_last=settings.channels_last)


# ---------------------------------------------------------------------------------------------- runs
def _finished_run(run_dir: Path, seed: int | None) -> Run:
    """A run as its folder records it (``metrics.json`` read once): accuracy, per-image counts, the
    counts of the metrics beyond mIoU, its ERF and attention statistics when measured, and its own
    costs: training seconds per iteration (mmengine's log), peak GPU memory as mmengine logs it or the
    peak resident memory of its process (``status.json``), evaluation images per second."""
    from seg.engine.logs import read_scalars

    payload = read_json(run_dir / 'metrics.json') or {}
    counts = read_per_image_counts(run_dir, payload)
    images, per_image = counts if counts is not None else ([], None)
    run = Run(seed, str(run_dir), read_run_metrics(run_dir, payload or None), per_image, images)
    run.region_counts = {k: v for k, v in (payload.get('region_counts') or {}).items() if v}
    run.attention = read_json(run_dir / 'attention.json') or {}
    erf = read_json(run_dir / 'erf.json') or {}
    run.erf = {k: v for k, v in erf.items() if k.startswith(('radius_', 'area_'))}
    try:
        train, _ = read_scalars(run_dir)
    except FileNotFoundError:
        train = []
    times = [e.values['time'] for e in train if isinstance(e.values.get('time'), (int, float))]
    if times:
        run.costs['train_s_per_iter'] = round(sum(times) / len(times), 4)
    memory = [e.values['memory'] for e in train if isinstance(e.values.get('memory'), (int, float))]
    if memory:
        run.costs['train_peak_gpu_mib'] = max(memory)  # mmengine's LoggerHook: torch.cuda.max_memory_allocated
    status = read_json(run_dir / 'status.json') or {}
    if status.get('peak_rss_mib') is not None:
        run.costs['train_peak_rss_mib'] = status['peak_rss_mib']
    if payload.get('images_per_second') is not None:
        run.costs['eval_images_per_second'] = payload['images_per_second']
    return run


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


def _check_pretrained(model: dict) -> None:
    """Stop before any run starts when the backbone's ImageNet weights cannot be had (as training would)."""
    from seg.models.weights import open_mmlab_file

    weights = (model.get('backbone') or {}).get('pretrained')
    if isinstance(weights, str) and weights.startswith('open-mmlab://'):
        open_mmlab_file(weights)
    elif isinstance(weights, str) and weights != 'timm' and not os.path.isfile(weights):
        raise FileNotFoundError(f'pretrained weights file {weights!r} does not exist')


def _models(parsed: list[ModelSpec], settings: CompareSettings, base: Config | None,
            num_classes: int | None = None) -> list[dict]:
    """The model config of every spec: on the backbone preset, else on the recipe's model (its
    pretrained weights kept); trained on the recipe ``base``'s data: its ``num_classes`` classes and
    its ignore index."""
    skeleton = backbone_skeleton(settings.backbone) if settings.backbone else \
        (base.model.to_dict() if base is not None and not settings.demo_recipe else backbone_skeleton('demo'))
    models = []
    for spec in parsed:
        model = load_config(spec.name).model.to_dict() if spec.kind == 'config' else \
            spec_model(spec, skeleton, settings.backbone or 'recipe')
        if base is not None:
            model = set_num_classes(model_without_ignore_index(model), num_classes)
        models.append(model)
    return models


def plan_comparison(parsed: list[ModelSpec], settings: CompareSettings, command: str = '',
                    log: Callable[[str], None] = print) -> Path:
    """Write the runs of a comparison as jobs (``OUT/plan.json``, ``OUT/plan.sh``, each run's
    ``config.json`` and ``run.json``); returns ``OUT``.

    Raises:
        ValueError: a run folder that holds a run of another configuration.
        RuntimeError, FileNotFoundError: the backbone's ImageNet weights cannot be had.
    """
    out = Path(settings.out_dir)
    base = _base_config(settings)
    classes, pair = _dataset_info(base)
    models = _models(parsed, settings, base, len(classes))
    published = published_results(settings.configs_dir) if settings.recipe else {}
    runs, schedule = [], {}
    for spec, model in zip(parsed, models):
        _check_pretrained(model)
        for seed in range(settings.seeds):
            cfg = training_config(base, model, settings, seed)
            schedule = schedule or schedule_of(cfg, settings)
            run_dir = out / 'runs' / safe_label(spec.label) / f'seed{seed}'
            data = json.loads(json.dumps(config_to_data(cfg)))  # tuples as lists, as the files hold it
            record = read_json(run_dir / 'run.json')
            if record is not None and record.get('config') != data:
                raise ValueError(f'{run_dir} holds a run of another configuration than this comparison\'s '
                                 f'({spec.label!r}, seed {seed}); give another --out, or remove that folder to '
                                 'train it again')
            ensure_dir(run_dir)
            (run_dir / 'config.json').write_text(json.dumps(data, indent=1))
            if record is None:
                (run_dir / 'run.json').write_text(json.dumps(dict(label=spec.label, seed=seed, config=data), indent=1))
            runs.append(PlannedRun(spec.label, seed, run_dir, int(cfg.train_cfg.max_iters)))
    profile = {k: getattr(settings, k) for k in ('device', 'batch', 'warmup', 'repeat', 'bootstrap', 'num_workers',
                                                   'precision', 'channels_last')}
    meta = dict(models=[dict(label=s.label, kind=s.kind, name=s.name, options=s.options, model=json.loads(
        json.dumps(config_to_data(Config(dict(model=m)))['model'])),
        published=published_for(s.label, settings.recipe, published)) for s, m in zip(parsed, models)],
        classes=classes, context_pair=list(pair), schedule=schedule, command=command,
        backbone=settings.backbone or 'recipe', size=list(_size(parsed, settings)), profile=profile)
    path = write_plan(out, runs, meta)
    log(f'planned {len(runs)} runs: {path} (bash {path}, or K at a time: tools/compare.py --collect after)')
    return out


def _size(parsed: list[ModelSpec], settings: CompareSettings) -> tuple[int, int]:
    if settings.size:
        return tuple(settings.size)
    if any(s.kind != 'config' for s in parsed):
        return DEFAULT_SIZES.get(settings.backbone or ('demo' if settings.demo_recipe else ''), DEFAULT_SIZE)
    return DEFAULT_SIZE


def collect_comparison(out: str | os.PathLike, log: Callable[[str], None] = print,
                       num_workers: int | None = None) -> Comparison:
    """Evaluate every finished run of a planned comparison that has no evaluation yet, profile the models
    and compare them. Unfinished and failed runs are listed (with their last log line) and left out.

    The models' configs are read back as data (their types checked, :func:`config_from_data`).

    Raises:
        FileNotFoundError: ``out`` holds no plan.
    """
    out = Path(out)
    plan = read_plan(out)
    prof = plan['profile']
    runs = planned_runs(out, plan)
    specs, models = [], []
    for entry in plan['models']:
        specs.append(ModelSpec(entry['label'], entry['kind'], entry['name'], dict(entry.get('options') or {})))
        models.append(config_from_data(dict(model=entry['model']), str(out / 'plan.json')).model.to_dict())
    missing: list[str] = []
    by_label: dict[str, list[Run]] = {s.label: [] for s in specs}
    for run in runs:
        state, last = run_status(run)
        if state != 'done':
            missing.append(f'`{run.label}` seed {run.seed}: {state}' + (f' (last log line: {last})' if last else ''))
            continue
        checkpoint = str(run.dir / f'iter_{run.iters}.pth')
        metrics = run.dir / 'metrics.json'
        if 'region_counts' not in (read_json(metrics) or {}) or _older_than(metrics, checkpoint):
            log(f'   evaluating {run.label} seed {run.seed}')
            evaluate(checkpoint, out=str(metrics),
                     num_workers=prof['num_workers'] if num_workers is None else num_workers,
                     precision=prof['precision'], channels_last=prof['channels_last'], metrics=REGION_METRICS)
        record = read_json(run.dir / 'run.json') or {}
        formats = record.get('analyses') if isinstance(record.get('analyses'), dict) else {}
        missing_analyses = [a for a in MODEL_ANALYSES if formats.get(a) != ANALYSIS_FORMAT
                            or not (run.dir / f'{a}.json').is_file() or _older_than(run.dir / f'{a}.json', checkpoint)]
        for name, result in checkpoint_analyses(checkpoint, missing_analyses, prof['device']).items():
            (run.dir / f'{name}.json').write_text(json.dumps(result))
        if not record.get('done') or missing_analyses:
            status = read_json(run.dir / 'status.json') or {}
            record.update(done=True, checkpoint=checkpoint, train_seconds=status.get('seconds'),
                          analyses={a: ANALYSIS_FORMAT for a in MODEL_ANALYSES})
            (run.dir / 'run.json').write_text(json.dumps(record, indent=1))
        by_label[run.label].append(_finished_run(run.dir, run.seed))
    for line in missing:
        log(f'   not in the comparison: {line}')
    settings = CompareSettings(size=tuple(plan['size']), **{k: v for k, v in prof.items()})
    result = _assemble(specs, models, [by_label[s.label] for s in specs], plan['classes'],
                       tuple(plan['context_pair']), plan['schedule'], settings, plan['backbone'], log)
    for m, entry in zip(result.models, plan['models']):
        m.published = entry.get('published')
    result.notes = [f'Not finished, left out: {line}.' for line in missing] + result.notes
    result.command = plan.get('command', '')
    return result


def _older_than(path: Path, checkpoint: str) -> bool:
    """Whether ``path`` was written before ``checkpoint`` (a run trained again in place): recompute it."""
    try:
        return os.path.getmtime(path) < os.path.getmtime(checkpoint)
    except OSError:
        return True


def _assemble(specs: list[ModelSpec], models: list[dict], runs: list[list[Run]], classes: list[str],
              pair: tuple, schedule: dict, settings: CompareSettings, backbone: str,
              log: Callable[[str], None]) -> Comparison:
    """Profile every model and compare them: summaries over seeds and differences from the first."""
    device = torch.device(settings.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {settings.device!r} requested but CUDA is not available')
    chosen = resolve_precision(settings.precision, device, settings.channels_last)
    size = tuple(settings.size)
    results: list[ModelResult] = []
    for i, (spec, model_cfg, model_runs) in enumerate(zip(specs, models, runs)):
        log(f'== [{i + 1}/{len(specs)}] profiling {spec.label} at {size[0]}x{size[1]} on {device}')
        model = build_model(Config(dict(model=model_cfg)))
        cost = profile_segmentor(model, size, device, settings.batch, settings.warmup, settings.repeat, chosen)
        del model
        results.append(ModelResult(spec, cost, model_runs))
    classes = list(classes)
    if not classes:
        for m in results:
            for r in m.runs:
                if r.metrics:
                    classes += [c for c in r.metrics.class_iou if c not in classes]
    for m in results:
        summarize(m, classes)
    notes = compare_to_baseline(results, classes, settings.bootstrap)
    compare_regions(results, settings.bootstrap)
    notes += [f'`{m.spec.label}`: {n}' for m in results for n in m.cost.notes]
    method = 'peak of the CPU allocator events (torch.profiler), weights and input included' \
        if device.type == 'cpu' else 'torch.cuda.max_memory_allocated, weights and input included'
    notes.append(f'Peak memory: {method} (seg.analysis.measure).')
    notes.append(f'Timed with {chosen.describe()}: the forward on the inference path (BatchNorm folded'
                 + (f', weights in {chosen.name}' if chosen.dtype is not None else '')
                 + '), the training step' + (f' under {chosen.name} autocast' if chosen.dtype is not None else '')
                 + '; training and evaluation of the runs with the same setting.')
    return Comparison(models=results, size=size, batch=settings.batch, device=str(device),
                      threads=torch.get_num_threads(), backbone=backbone, classes=classes,
                      context_pair=tuple(pair), schedule=schedule, machine=environment(device), notes=notes,
                      bootstrap=settings.bootstrap)


# ------------------------------------------------------------------------------------------ the run
def run_comparison(specs: Sequence[str | ModelSpec], settings: CompareSettings,
                   log: Callable[[str], None] = print, command: str = '') -> Comparison | None:
    """Profile, optionally train (every model, every seed), and collect the accuracy of every model.

    With ``settings.train`` (or ``plan_only``) the runs are planned as jobs in ``settings.out_dir``
    (:func:`plan_comparison`), executed here ``settings.launch.parallel`` at a time (not with
    ``plan_only``: then None is returned), and collected (:func:`collect_comparison`).

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
    if (settings.train or settings.plan_only) and not settings.out_dir:
        raise ValueError('training needs an output folder (the runs go to OUT/runs/<model>/seed<k>)')
    if settings.seeds < 1:
        raise ValueError(f'--seeds must be >= 1, got {settings.seeds}')
    if settings.backbone is not None:
        backbone_skeleton(settings.backbone)  # a clear error for an unknown preset, before anything runs
    settings.launch.check()
    if settings.train or settings.plan_only:
        out = plan_comparison(parsed, settings, command, log)
        if settings.plan_only:
            return None
        execute_plan(out, settings.launch, log)
        return collect_comparison(out, log)
    models = _models(parsed, settings, None)
    runs = [_recorded_runs(spec, i, settings) for i, spec in enumerate(parsed)]
    settings = copy.copy(settings)
    settings.size = _size(parsed, settings)
    return _assemble(parsed, models, runs, [], (), {}, settings, settings.backbone or 'demo', log)


def _trimap_curves(result: Comparison) -> list[tuple[str, list[float], list[float]]]:
    """Per model with trimap counts: the accuracy at each band width, mean and std over its runs."""
    import numpy as np

    from seg.evaluation.region_metrics import trimap_accuracy

    curves = []
    for m in result.models:
        runs = [trimap_accuracy(np.asarray(r.region_counts['trimap']).sum(0)) for r in m.runs if 'trimap' in r.region_counts]
        if runs:
            values = np.stack(runs)  # [runs, widths]
            std = values.std(0, ddof=1) if len(runs) > 1 else np.zeros(values.shape[1])
            curves.append((m.spec.label, values.mean(0).tolist(), std.tolist()))
    return curves


def _erf_maps(result: Comparison) -> list[tuple[str, object]]:
    """Per model whose runs measured it: the mean of their normalised ERF heatmaps (``erf.json``)."""
    import numpy as np

    maps = []
    for m in result.models:
        heat = [np.asarray(e['heatmap']) for e in (read_json(Path(r.work_dir) / 'erf.json') or {} for r in m.runs
                                                   if r.work_dir) if e.get('heatmap')]
        if heat and all(h.shape == heat[0].shape for h in heat):
            maps.append((m.spec.label, np.mean(heat, axis=0)))
    return maps if maps and all(a.shape == maps[0][1].shape for _, a in maps) else []


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
    rows = [(m.spec.label, [(d.mean, d.low, d.high, getattr(d, 'verdict', None))
                            for d in (m.class_difference[c] for c in result.classes)])
            for m in result.models[1:] if m.class_difference]
    images = ''
    if rows:
        paths['differences'] = str(out / 'class_differences.png')
        plot_class_differences(result.classes, rows, paths['differences'],
                               title=f'IoU difference from {result.models[0].spec.label}')
        images = '\n\n![per-class IoU differences](class_differences.png)'
    trimap = _trimap_curves(result)
    if trimap:
        from seg.evaluation.region_metrics import TRIMAP_WIDTHS
        from seg.visualization.plots import plot_curves

        paths['trimap'] = str(out / 'trimap.png')
        plot_curves(TRIMAP_WIDTHS, trimap, paths['trimap'], 'band width around the ground-truth boundaries (px)',
                    'pixel accuracy in the band (%)', 'Trimap accuracy, mean ± std over the seeds', log_x=True)
        images += '\n\n![trimap accuracy](trimap.png)'
    erf = _erf_maps(result)
    if erf:
        from seg.visualization.plots import plot_heatmaps

        paths['erf'] = str(out / 'erf.png')
        plot_heatmaps(erf, paths['erf'], 'Effective receptive field of the centre pixel (mean over the seeds; '
                      '+: the centre)', 'input gradient, normalised')
        images += '\n\n![effective receptive fields](erf.png)'
    report = (to_markdown(result) + f'\n![mIoU against cost](miou_latency.png){images}\n')
    Path(paths['report']).write_text(report)
    Path(paths['json']).write_text(json.dumps(to_json(result), indent=1))
    Path(paths['csv']).write_text(to_csv(result))
    return paths
