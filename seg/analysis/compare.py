"""Side-by-side comparison of context heads and attention modules: cost, accuracy, and a chart.

No paper. A model is named by a config path or by a *spec* ``NAME[:key=value,...]``:

* ``NAME`` a decode head of :data:`seg.models.heads.__all__` that is registered in ``MODELS``, by
  its class name (``CCHead``), lower-cased, without ``head`` (``cc``) or by the method's name
  (``ccnet``, ``danet``, ``nonlocal``, ``fcn``): the head is built on the chosen backbone with the
  head's own defaults and the options given (``ccnet:recurrence=1``);
* ``NAME`` a module of the attention zoo (:func:`seg.models.attention.list_attention`): an
  ``AttentionHead`` with that module (``cbam:reduction=8,spatial_kernel=3``).

Both lists come from the registries, so a newly registered head or module is usable by name with
no change here. Every extra output a head returns in training (DANet's ``pam`` / ``cam``) is
supervised with weight 1, the main output with 1 and the auxiliary head with 0.4.

Accuracy is never recomputed here: it is read from a run's work directory
(:func:`read_run_metrics`), or produced by ``train=True``, which trains every model with the same
short schedule on the synthetic dataset (the demo config with the head swapped) and evaluates it.
"""
from __future__ import annotations

import ast
import csv
import datetime
import glob
import inspect
import io
import json
import math
import os
import os.path as osp
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from mmengine.config import Config

from seg.visualization.plots import read_scalar_entries

from .profile import CostReport, profile_segmentor

__all__ = ['BACKBONES', 'ComparisonResult', 'CompareRow', 'ModelSpec', 'RunMetrics', 'available_models',
           'build_spec_model', 'find_configs_dir', 'parse_size', 'parse_spec', 'read_run_metrics',
           'run_comparison', 'to_csv', 'to_markdown', 'train_config', 'write_outputs']

METHOD_ALIASES = {'fcn': 'FCNHead', 'ccnet': 'CCHead', 'danet': 'DAHead', 'nonlocal': 'NLHead',
                  'non_local': 'NLHead'}
"""Method names beside the automatic aliases (a head missing from the registry is left out)."""

BACKBONES: dict[str, tuple[str, dict]] = {
    # The CPU demo's network: DilatedResNet-18 (16, 32, 64, 64) channels, head width 32.
    'demo': ('demo_ccnet.py', {}),
    # mmsegmentation's R-50-D8 setting: head 2048 -> 512, auxiliary 1024 -> 256.
    'r50': ('_base_/models/fcn_r50-d8.py', {}),
    # mmsegmentation's R-18-D8 setting: head 512 -> 128, auxiliary 256 -> 64.
    'r18': ('_base_/models/fcn_r50-d8.py', {'backbone.depth': 18, 'decode_head.in_channels': 512,
                                            'decode_head.channels': 128, 'auxiliary_head.in_channels': 256,
                                            'auxiliary_head.channels': 64}),
}
"""Backbone presets: (config under ``configs/`` whose model is the skeleton, overrides)."""

TRAIN_BASE = 'demo_ccnet.py'
"""The config under ``configs/`` whose data, schedule and runtime ``train=True`` runs use."""

DEFAULT_SIZES = {'demo': (96, 192)}
DEFAULT_SIZE = (512, 1024)


# ------------------------------------------------------------------------------------------ specs
@dataclass
class ModelSpec:
    """One model of a comparison.

    Attributes:
        label: how the table names it (the text given, or the config's file stem).
        kind: ``'head'``, ``'attention'`` or ``'config'``.
        name: head class name, attention module name, or config path.
        options: head or attention options from the spec.
    """

    label: str
    kind: str
    name: str
    options: dict = field(default_factory=dict)


def available_models() -> dict[str, tuple[str, str]]:
    """Every name a spec may use: ``{name: (kind, target)}``, from the registries.

    Heads (``kind='head'``, target = class name) come from ``seg.models.heads.__all__`` (those
    registered in ``MODELS``) under their class name, its lower-case form, that form without the
    ``head`` suffix, and :data:`METHOD_ALIASES`; attention modules (``kind='attention'``) come from
    :func:`seg.models.attention.list_attention`. A head name wins over an attention name (``nonlocal``
    is the ``NLHead``); the shadowed module stays reachable as ``attention:attention=nonlocal``
    (an ``AttentionHead`` given the module by name).
    """
    import seg.models.heads as heads
    from seg.models.attention import list_attention
    from seg.registry import MODELS

    names: dict[str, tuple[str, str]] = {}
    for attn in list_attention():
        names[attn] = ('attention', attn)
    registered = [c for c in heads.__all__ if c in MODELS.module_dict]
    for cls_name in registered:
        low = cls_name.lower()
        for alias in (cls_name, low, low[:-4] if low.endswith('head') else low):
            names[alias] = ('head', cls_name)
    for alias, cls_name in METHOD_ALIASES.items():
        if cls_name in registered:
            names[alias] = ('head', cls_name)
    return names


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_spec(text: str) -> ModelSpec:
    """Parse ``NAME[:key=value,...]`` or a config path into a :class:`ModelSpec`.

    Values are Python literals (``recurrence=1``, ``kernel_size=(3, 3)``), else strings.

    Raises:
        ValueError: an unknown name (the valid names are listed) or an option without ``=``.
        FileNotFoundError: a ``.py`` path that does not exist.
    """
    text = text.strip()
    if text.endswith('.py') or osp.isfile(text):
        if not osp.isfile(text):
            raise FileNotFoundError(f'config file {text!r} does not exist')
        return ModelSpec(label=osp.splitext(osp.basename(text))[0], kind='config', name=text)
    name, _, opts = text.partition(':')
    names = available_models()
    key = name.strip()
    if key not in names and key.lower() in names:
        key = key.lower()
    if key not in names:
        raise ValueError(f'unknown model {name!r} in {text!r}; valid names are: {", ".join(sorted(names))} '
                         '(or give a config path)')
    kind, target = names[key]
    options: dict[str, Any] = {}
    if opts.strip():
        # Split on commas that start a new "key=" (so tuple values keep their commas).
        for item in re.split(r',(?=\s*[A-Za-z_]\w*\s*=)', opts):
            k, eq, v = item.partition('=')
            if not eq or not k.strip().isidentifier():
                raise ValueError(f'option {item!r} of {text!r} must look like key=value')
            options[k.strip()] = _parse_value(v.strip())
    return ModelSpec(label=text, kind=kind, name=target, options=options)


def parse_size(text: str) -> tuple[int, int]:
    """``'512x1024'`` -> ``(512, 1024)`` (height x width).

    Raises:
        ValueError: if the text is not two positive integers joined by ``x``.
    """
    m = re.fullmatch(r'\s*(\d+)\s*[xX*,]\s*(\d+)\s*', str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f'size must be HEIGHTxWIDTH with positive integers (e.g. 512x1024), got {text!r}')
    return int(m.group(1)), int(m.group(2))


# -------------------------------------------------------------------------------------- building
def find_configs_dir(configs_dir: str | os.PathLike | None = None) -> Path:
    """The ``configs/`` folder: the one given, else ``./configs``, else the repository's.

    Raises:
        FileNotFoundError: if none exists.
    """
    candidates = [Path(configs_dir)] if configs_dir else [
        Path.cwd() / 'configs', Path(__file__).resolve().parents[2] / 'configs']
    for path in candidates:
        if (path / TRAIN_BASE).is_file():
            return path
    raise FileNotFoundError(f'no configs folder with {TRAIN_BASE} at {", ".join(map(str, candidates))}; '
                            'run from the repository root or pass configs_dir / --configs-dir')


def _skeleton(backbone: str, configs_dir: Path) -> dict:
    """The model dict of a backbone preset (its decode head gives the generic head settings)."""
    if backbone not in BACKBONES:
        raise ValueError(f'unknown backbone {backbone!r}; valid backbones are: {", ".join(BACKBONES)}')
    rel, overrides = BACKBONES[backbone]
    cfg = Config.fromfile(str(configs_dir / rel))
    if overrides:
        cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    model = cfg.model.to_dict()
    model['backbone']['pretrained'] = None
    return model


def _head_config(spec: ModelSpec, generic: dict) -> dict:
    """The decode-head dict of a head / attention spec on a skeleton's generic head settings."""
    from seg.registry import MODELS

    if spec.kind == 'attention':
        head = dict(type='AttentionHead', **generic)
        head['attention'] = dict(type=spec.name, **spec.options)
        return head
    cls = MODELS.get(spec.name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != 'self']
    unknown = sorted(set(spec.options) - set(accepted))
    if unknown or {'in_channels', 'channels', 'num_classes'} & set(spec.options):
        bad = unknown or sorted({'in_channels', 'channels', 'num_classes'} & set(spec.options))
        raise ValueError(f'{spec.label!r}: {spec.name} has no option(s) {", ".join(bad)} settable here; '
                         f'its options are: {", ".join(p for p in accepted if p not in generic)}')
    head = dict(type=spec.name, **{k: v for k, v in generic.items() if k in params})
    head.update(spec.options)
    return head


def _supervised_outputs(model_cfg: dict) -> list[str]:
    """Output keys the model's heads return in training (probed on a small input)."""
    from seg.apis.model_io import build_model

    model = build_model(Config(dict(model=model_cfg)))
    model.train()
    with torch.no_grad():
        outs = model.forward_logits(torch.zeros(2, 3, 64, 64))
    return list(outs)


def build_spec_model(spec: ModelSpec, backbone: str = 'demo', num_classes: int | None = None,
                     configs_dir: str | os.PathLike | None = None) -> dict:
    """The full ``EncoderDecoder`` config dict of a spec.

    A config spec gives its own ``model`` (backbone weights off: profiling needs none); a head or
    attention spec is built on the backbone preset's skeleton, with the preset's head width, input
    index, dropout and norm.

    Args:
        spec: from :func:`parse_spec`.
        backbone: a key of :data:`BACKBONES` (ignored for config specs).
        num_classes: override of the class count (default: the preset's or config's).
        configs_dir: the ``configs/`` folder (see :func:`find_configs_dir`).

    Raises:
        ValueError: an unknown backbone, or an option the head does not have.
    """
    from seg.apis.config import import_all

    import_all()
    if spec.kind == 'config':
        cfg = Config.fromfile(spec.name)
        model = cfg.model.to_dict()
        if isinstance(model.get('backbone'), dict):
            model['backbone']['pretrained'] = None
    else:
        model = _skeleton(backbone, find_configs_dir(configs_dir))
        dh = model['decode_head']
        generic = dict(in_channels=dh['in_channels'], channels=dh['channels'],
                       num_classes=model['num_classes'], in_index=dh.get('in_index', -1),
                       dropout=dh.get('dropout', 0.1), norm=dh.get('norm', 'BN'))
        model['decode_head'] = _head_config(spec, generic)
        weights = {'out': 1.0, 'aux': 0.4}
        model['loss_weights'] = weights
        try:
            outputs = _supervised_outputs(model)
        except ValueError as exc:
            raise ValueError(f'{spec.label!r} cannot be built on the {backbone!r} backbone (head width '
                             f'{generic["channels"]}): {exc}') from exc
        for key in outputs:
            weights.setdefault(key, 1.0)
    if num_classes is not None:
        model['num_classes'] = num_classes
        for head in ('decode_head', 'auxiliary_head'):
            if isinstance(model.get(head), dict):
                model[head]['num_classes'] = num_classes
    return model


def train_config(model: dict, iters: int, batch_size: int | None = None, seed: int = 0,
                 configs_dir: str | os.PathLike | None = None, cfg_options: dict | None = None) -> Config:
    """The demo config (synthetic data, SGD, poly LR) with ``model`` swapped in and a short schedule.

    Validation during training is off (each run is evaluated once at the end by
    :func:`seg.apis.evaluate`); one checkpoint is written at the last iteration.

    Args:
        model: the ``EncoderDecoder`` dict (its class count must match the synthetic data's).
        iters: training iterations.
        batch_size: images per iteration (default: the demo's).
        seed: ``randomness.seed``.
        configs_dir: the ``configs/`` folder.
        cfg_options: further overrides, ``{'a.b': value}``.

    Raises:
        ValueError: a non-positive ``iters`` or ``batch_size``, or a model with another class count.
    """
    if iters < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(f'iters and batch size must be >= 1, got iters={iters}, batch_size={batch_size}')
    cfg = Config.fromfile(str(find_configs_dir(configs_dir) / TRAIN_BASE))
    if model.get('num_classes') != cfg.model.num_classes:
        raise ValueError(f'the model predicts {model.get("num_classes")} classes but the training data '
                         f'({TRAIN_BASE}) has {cfg.model.num_classes}')
    cfg.model = model
    cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=iters, by_epoch=False)]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters, val_begin=iters + 1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=iters, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = min(50, iters)
    cfg.randomness = dict(seed=seed)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


# --------------------------------------------------------------------------------------- metrics
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


def _from_metric_dict(values: dict, source: str) -> RunMetrics | None:
    if 'mIoU' not in values:
        return None
    class_iou = {k[4:]: float(v) for k, v in values.items() if k.startswith('IoU.')}
    return RunMetrics(float(values['mIoU']), float(values.get('mAcc', math.nan)),
                      float(values.get('aAcc', math.nan)), class_iou, source)


def _read_scalars(work_dir: Path) -> RunMetrics | None:
    files = sorted(glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json')))
    vals: list[tuple[int, int, dict, str]] = []
    for order, path in enumerate(files):
        for entry in read_scalar_entries(path):
            if 'mIoU' in entry:
                vals.append((order, int(entry.get('step', 0)), entry, path))
    if not vals:
        return None
    best = sorted(glob.glob(str(work_dir / 'best_mIoU_iter_*.pth')))
    if best:
        step = int(re.search(r'best_mIoU_iter_(\d+)\.pth$', best[-1]).group(1))
        hits = [v for v in vals if v[1] == step]
        if hits:
            _, step, entry, path = hits[-1]
            return _from_metric_dict(entry, f'{path} (best checkpoint, step {step})')
    _, step, entry, path = max(vals, key=lambda v: (v[1], v[0]))
    return _from_metric_dict(entry, f'{path} (last validation, step {step})')


def read_run_metrics(work_dir: str | os.PathLike | None) -> RunMetrics | None:
    """The accuracy a run's work directory records, or None when it records none.

    Looks, in order, at ``metrics.json`` (what ``tools/eval.py --out`` and the demo write), then at
    mmengine's ``<timestamp>/vis_data/scalars.json`` (the validation of the best checkpoint
    ``best_mIoU_iter_N.pth``, else the last validation). ``compare_run.json`` (written by
    ``train=True``) adds the training time.
    """
    if not work_dir or not osp.isdir(work_dir):
        return None
    work = Path(work_dir)
    result = None
    metrics_file = work / 'metrics.json'
    if metrics_file.is_file():
        with open(metrics_file) as f:
            payload = json.load(f)
        values = payload.get('metrics', payload) if isinstance(payload, dict) else {}
        result = _from_metric_dict(values, str(metrics_file))
    if result is None:
        result = _read_scalars(work)
    run_file = work / 'compare_run.json'
    if result is not None and run_file.is_file():
        with open(run_file) as f:
            result.train_seconds = json.load(f).get('train_seconds')
    return result


# ------------------------------------------------------------------------------------ comparison
@dataclass
class CompareRow:
    """One model of a comparison: its spec, measured cost and recorded accuracy."""

    spec: ModelSpec
    cost: CostReport
    metrics: RunMetrics | None
    work_dir: str | None


@dataclass
class ComparisonResult:
    """All rows plus what the table header and notes need."""

    rows: list[CompareRow]
    size: tuple[int, int]
    batch: int
    device: str
    threads: int
    backbone: str
    context_pair: tuple[str, ...] = ()
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ''


def _safe(label: str) -> str:
    """A file-name-safe form of a label (``ccnet:recurrence=1`` -> ``ccnet_recurrence-1``)."""
    return re.sub(r'[^A-Za-z0-9_-]+', '_', label.replace('=', '-')).strip('_') or 'model'


def _context_pair(cfgs: Sequence[Config | None]) -> tuple[str, ...]:
    """The ``CONTEXT_PAIR`` of the first training dataset among ``cfgs`` that has one."""
    from seg.registry import DATASETS

    for cfg in cfgs:
        if cfg is None:
            continue
        dataset = cfg.get('train_dataloader', {}).get('dataset', {})
        dtype = dataset.get('type') if isinstance(dataset, dict) else None
        if isinstance(dtype, str) and dtype in DATASETS:
            pair = getattr(DATASETS.get(dtype), 'CONTEXT_PAIR', None)
            if pair:
                return tuple(pair)
    return ()


def _run_config(work_dir: str | None) -> Config | None:
    """The config a training run saved into its work dir (mmengine writes ``<work_dir>/<name>.py``)."""
    if not work_dir:
        return None
    for path in sorted(glob.glob(osp.join(work_dir, '*.py'))):
        try:
            return Config.fromfile(path)
        except Exception:  # noqa: BLE001 - not a config after all: look no further for a pair
            return None
    return None


def _train_and_evaluate(label: str, model: dict, run_dir: Path, iters: int, batch_size: int | None,
                        seed: int, configs_dir: str | os.PathLike | None, cfg_options: dict | None,
                        num_workers: int) -> None:
    from seg.apis import evaluate, train

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = train_config(model, iters, batch_size, seed, configs_dir, cfg_options)
    cfg_path = run_dir / f'{_safe(label)}.py'
    cfg.dump(str(cfg_path))
    start = time.perf_counter()
    runner = train(str(cfg_path), work_dir=str(run_dir))
    train_seconds = time.perf_counter() - start
    ckpt = run_dir / f'iter_{runner.iter}.pth'
    del runner
    start = time.perf_counter()
    evaluate(str(ckpt), out=str(run_dir / 'metrics.json'), num_workers=num_workers)
    with open(run_dir / 'compare_run.json', 'w') as f:
        json.dump(dict(label=label, iters=iters, batch_size=cfg.train_dataloader.batch_size, seed=seed,
                       checkpoint=str(ckpt), train_seconds=round(train_seconds, 1),
                       eval_seconds=round(time.perf_counter() - start, 1)), f, indent=2)


def run_comparison(specs: Sequence[str | ModelSpec], backbone: str = 'demo', size: tuple[int, int] | None = None,
                   device: str = 'cpu', batch: int = 1, warmup: int = 3, repeat: int = 10,
                   work_dirs: Sequence[str] | None = None, out_dir: str | None = None, train: bool = False,
                   iters: int = 300, train_batch_size: int | None = None, seed: int = 0,
                   num_classes: int | None = None, configs_dir: str | None = None,
                   cfg_options: dict | None = None, num_workers: int = 2, log=print) -> ComparisonResult:
    """Measure, optionally train, and collect the accuracy of every model.

    Args:
        specs: specs or config paths (see :func:`parse_spec`).
        backbone: backbone preset for the specs that are names.
        size: input (H, W) of the FLOPs and timings (default: 96x192 for ``demo``, the first config's
            ``crop_size``, else 512x1024).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        batch: batch size of the timed passes.
        warmup: untimed passes before timing.
        repeat: timed passes (0: no timing, no memory).
        work_dirs: one work directory per spec whose recorded accuracy to show; default: for a config,
            its ``work_dir`` or ``work_dirs/<config name>``; for a name, ``<out_dir>/runs/<name>``.
        out_dir: where ``train=True`` puts its runs (``<out_dir>/runs/<name>``).
        train: train every spec on the synthetic data first (see :func:`train_config`).
        iters: training iterations per model when ``train``.
        train_batch_size: training batch size when ``train`` (default: the demo config's).
        seed: training seed.
        num_classes: class-count override (forced to the synthetic data's when ``train``).
        configs_dir: the ``configs/`` folder.
        cfg_options: overrides applied to every training config.
        num_workers: data loader workers of the final evaluation.
        log: where progress lines go.

    Returns:
        A :class:`ComparisonResult`.

    Raises:
        ValueError: bad specs, sizes, devices, or a ``work_dirs`` list of another length.
    """
    parsed = [s if isinstance(s, ModelSpec) else parse_spec(s) for s in specs]
    if not parsed:
        raise ValueError('nothing to compare: give model names or config paths')
    labels = [s.label for s in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f'each model may appear once, got {labels}')
    if work_dirs is not None and len(work_dirs) != len(parsed):
        raise ValueError(f'{len(work_dirs)} work dirs given for {len(parsed)} models; give one per model')
    if train and not out_dir:
        raise ValueError('train=True needs out_dir (the runs go to <out_dir>/runs/<name>)')
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device!r} requested but CUDA is not available')

    config_objs = [Config.fromfile(s.name) if s.kind == 'config' else None for s in parsed]
    if train:
        base = Config.fromfile(str(find_configs_dir(configs_dir) / TRAIN_BASE))
        num_classes = base.model.num_classes
        config_objs = [base if c is None else c for c in config_objs]
    if size is None:
        crop = next((c.get('crop_size') for c in config_objs if c is not None and c.get('crop_size')), None)
        if any(s.kind != 'config' for s in parsed) and backbone in DEFAULT_SIZES:
            size = DEFAULT_SIZES[backbone]
        elif crop:
            size = (int(crop[0]), int(crop[1]))
        else:
            size = DEFAULT_SIZE
    models = [build_spec_model(s, backbone, num_classes, configs_dir) for s in parsed]

    rows = []
    from seg.apis.model_io import build_model

    for i, (spec, model_cfg) in enumerate(zip(parsed, models)):
        if work_dirs is not None:
            work = work_dirs[i]
        elif spec.kind == 'config':
            work = config_objs[i].get('work_dir') or osp.join('work_dirs', spec.label)
        else:
            work = osp.join(out_dir, 'runs', _safe(spec.label)) if out_dir else None
        if train:
            run_dir = Path(work_dirs[i]) if work_dirs is not None else Path(out_dir) / 'runs' / _safe(spec.label)
            log(f'== [{i + 1}/{len(parsed)}] training {spec.label} -> {run_dir}')
            _train_and_evaluate(spec.label, model_cfg, run_dir, iters, train_batch_size, seed, configs_dir,
                                cfg_options, num_workers)
            work = str(run_dir)
        log(f'== [{i + 1}/{len(parsed)}] profiling {spec.label} at {size[0]}x{size[1]} on {device}')
        model = build_model(Config(dict(model=model_cfg)))
        cost = profile_segmentor(model, size, dev, batch, warmup, repeat)
        del model
        rows.append(CompareRow(spec, cost, read_run_metrics(work), work))

    classes: list[str] = []
    for row in rows:
        if row.metrics:
            classes += [c for c in row.metrics.class_iou if c not in classes]
    notes = [f'`{r.spec.label}`: {n}' for r in rows for n in r.cost.notes]
    if dev.type == 'cpu':
        notes.append(f'CPU peak memory: {rows[0].cost.memory_method} (a lower bound; see seg/analysis/profile.py)')
    else:
        notes.append(f'CUDA peak memory: {rows[0].cost.memory_method} (weights and input included)')
    # The data a run was trained on decides the context pair: the config mmengine saved in the run's
    # work dir, else the model's own config.
    run_cfgs = [_run_config(r.work_dir) if r.metrics else None for r in rows]
    pair = _context_pair([rc or c for rc, c in zip(run_cfgs, config_objs)])
    return ComparisonResult(rows=rows, size=tuple(size), batch=batch, device=str(dev),
                            threads=torch.get_num_threads(), backbone=backbone,
                            context_pair=pair, classes=classes, notes=notes)


# -------------------------------------------------------------------------------------- output
def _si(n: float | None, unit: str = '') -> str:
    if n is None:
        return ''
    for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(n) >= factor:
            return f'{n / factor:.2f} {prefix}{unit}'
    return f'{n:g}{(" " + unit) if unit else ""}'


def _num(v: float | None, digits: int = 2) -> str:
    return '' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.{digits}f}'


def _mib(n: int | None) -> str:
    return '' if n is None else f'{n / 2 ** 20:.1f}'


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def to_markdown(result: ComparisonResult, per_class: bool = True) -> str:
    """The comparison as markdown: main table, per-class IoU table (when any run has one), notes."""
    h, w = result.size
    trained = any(r.metrics for r in result.rows)
    timed = any(r.cost.forward_ms is not None for r in result.rows)
    header = ['model', 'params', 'head params', f'FLOPs @1x3x{h}x{w}', 'head FLOPs']
    if timed:
        header += [f'fwd ms (bs {result.batch})', 'fwd+bwd ms', 'fwd peak MiB', 'fwd+bwd peak MiB']
    if trained:
        header += ['mIoU', 'mAcc', 'aAcc'] + [f'IoU {c}' for c in result.context_pair]
        if any(r.metrics and r.metrics.train_seconds for r in result.rows):
            header.append('train min')
    body = []
    for r in result.rows:
        c = r.cost
        line = [r.spec.label, _si(c.params), _si(c.head_params), _si(c.flops), _si(c.head_flops)]
        if timed:
            line += [_num(c.forward_ms, 1), _num(c.train_ms, 1), _mib(c.forward_peak), _mib(c.train_peak)]
        if trained:
            m = r.metrics
            line += [_num(m.miou), _num(m.macc), _num(m.aacc)] if m else ['', '', '']
            line += [_num(m.class_iou.get(cn)) if m else '' for cn in result.context_pair]
            if 'train min' in header:
                line.append(_num(m.train_seconds / 60, 1) if m and m.train_seconds else '')
        body.append(line)
    parts = [_table(header, body)]
    if per_class and trained and result.classes:
        parts.append('Per-class IoU (%):\n\n' + _table(
            ['model'] + result.classes,
            [[r.spec.label] + [_num(r.metrics.class_iou.get(cn)) if r.metrics else '' for cn in result.classes]
             for r in result.rows]))
    notes = [f'Input 1x3x{h}x{w} for FLOPs (counted by torch.utils.flop_counter.FlopCounterMode: '
             '2 per multiply-add of convolutions and matrix products; inference forward, no auxiliary head).',
             f'Device {result.device}, {result.threads} threads, torch {torch.__version__}; latency is the '
             f'median after warm-up; fwd = eval forward under no_grad, fwd+bwd = training step '
             '(losses of all supervised outputs, backward).',
             'params include the auxiliary head; head = decode head alone.', *result.notes]
    sources = [f'`{r.spec.label}`: {r.metrics.source}' for r in result.rows if r.metrics]
    if sources:
        notes.append('Accuracy read from: ' + '; '.join(sources) + '.')
    if result.command:
        notes.append(f'Command: `{result.command}`')
    notes.append(f'Measured {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}.')
    parts.append('\n'.join(f'- {n}' for n in notes))
    return '\n\n'.join(parts) + '\n'


def to_csv(result: ComparisonResult) -> str:
    """The comparison as CSV with exact integers (params, FLOPs, bytes) and per-class IoU columns."""
    buf = io.StringIO()
    h, w = result.size
    fields = ['model', 'kind', 'params', 'head_params', 'flops', 'head_flops', 'input_h', 'input_w',
              'batch', 'device', 'forward_ms', 'train_ms', 'forward_peak_bytes', 'train_peak_bytes',
              'mIoU', 'mAcc', 'aAcc', 'train_seconds'] + [f'IoU.{c}' for c in result.classes] + \
        ['metrics_source', 'work_dir']
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    for r in result.rows:
        c, m = r.cost, r.metrics
        row = dict(model=r.spec.label, kind=r.spec.kind, params=c.params, head_params=c.head_params,
                   flops=c.flops, head_flops=c.head_flops, input_h=h, input_w=w, batch=c.batch,
                   device=c.device, forward_ms=_num(c.forward_ms, 3), train_ms=_num(c.train_ms, 3),
                   forward_peak_bytes=c.forward_peak if c.forward_peak is not None else '',
                   train_peak_bytes=c.train_peak if c.train_peak is not None else '',
                   mIoU=_num(m.miou) if m else '', mAcc=_num(m.macc) if m else '',
                   aAcc=_num(m.aacc) if m else '',
                   train_seconds=m.train_seconds if m and m.train_seconds is not None else '',
                   metrics_source=m.source if m else '', work_dir=r.work_dir or '')
        for cn in result.classes:
            row[f'IoU.{cn}'] = _num(m.class_iou.get(cn)) if m else ''
        writer.writerow(row)
    return buf.getvalue()


def write_outputs(result: ComparisonResult, out_dir: str, chart_x: str = 'latency') -> dict[str, str]:
    """Write ``compare.md``, ``compare.csv`` and the chart ``compare.png`` into ``out_dir``.

    The chart plots mIoU (or, when no model has one, GFLOPs) against the forward latency
    (``chart_x='latency'``; FLOPs when a model was not timed) or against GFLOPs (``'flops'``).

    Returns:
        ``{'markdown': path, 'csv': path, 'chart': path}``.
    """
    from seg.visualization.plots import plot_tradeoff

    if chart_x not in ('latency', 'flops'):
        raise ValueError(f"chart_x must be 'latency' or 'flops', got {chart_x!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths = {'markdown': osp.join(out_dir, 'compare.md'), 'csv': osp.join(out_dir, 'compare.csv'),
             'chart': osp.join(out_dir, 'compare.png')}
    with open(paths['markdown'], 'w') as f:
        f.write(to_markdown(result))
    with open(paths['csv'], 'w') as f:
        f.write(to_csv(result))
    use_latency = chart_x == 'latency' and all(r.cost.forward_ms is not None for r in result.rows)
    has_miou = any(r.metrics for r in result.rows)
    points = []
    for r in result.rows:
        x = r.cost.forward_ms if use_latency else r.cost.flops / 1e9
        y = (r.metrics.miou if r.metrics else None) if has_miou else r.cost.flops / 1e9
        if y is not None:
            points.append((r.spec.label, x, y))
    h, w = result.size
    xlabel = (f'forward latency (ms, batch {result.batch}, {result.device})' if use_latency
              else f'GFLOPs (1x3x{h}x{w})')
    ylabel = 'mIoU (%)' if has_miou else f'GFLOPs (1x3x{h}x{w})'
    plot_tradeoff(points, paths['chart'], xlabel=xlabel, ylabel=ylabel,
                  title=f'{ylabel.split(" (")[0]} vs {xlabel.split(" (")[0]} at {h}x{w}')
    return paths
