"""Loading configs and resolving what depends on the data or on where the run happens.

* :func:`load_config`: a config file (code the user chose on the command line, executed by
  mmengine) or an already built ``Config`` (e.g. rebuilt from a checkpoint's data), with
  ``--cfg-options`` type-checked against the values they replace, unknown constructor keys caught
  before anything is built, and one ``ignore_index`` (:func:`resolve_ignore_index`).
* :func:`resolve_runtime`: the per-process batch, which depends on the launch.
* :func:`resolve_training_config`: the one function that turns a config and the command line into
  the final config of a training run; the runner builds from it without further edits.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from typing import Any

from mmengine.config import Config

__all__ = ['check_config_keys', 'check_overrides', 'import_all', 'load_config', 'model_without_ignore_index',
           'resolve_ignore_index', 'resolve_runtime', 'resolve_training_config']

DEFAULT_IGNORE_INDEX = 255


def import_all() -> None:
    """Import every module that registers something (models, datasets, metrics, engine): the
    locations each registry names (:func:`seg.registry.import_registered_modules`)."""
    from seg.registry import import_registered_modules

    import_registered_modules()


def load_config(config: str | os.PathLike | Config, cfg_options: dict | None = None) -> Config:
    """Read a config file (mmengine ``_base_`` style) or take a ``Config``, apply overrides, resolve.

    Args:
        config: a config path, or a ``Config`` (used as it is, not re-read).
        cfg_options: ``{'a.b': value}`` overrides (``--cfg-options``); each must have the type of the
            value it replaces.

    Raises:
        FileNotFoundError: no such config file.
        ValueError: an override of the wrong type, an unknown constructor key, or two explicit
            ``ignore_index`` settings that disagree.
    """
    import_all()
    if isinstance(config, Config):
        cfg = config
        source = cfg.filename or 'config'
    else:
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist')
        cfg = Config.fromfile(path)
        source = path
    if cfg_options:
        check_overrides(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    cfg.setdefault('default_scope', 'seg')
    check_config_keys(cfg, source)
    resolve_ignore_index(cfg)
    return cfg


# ------------------------------------------------------------------------------- overrides
def _lookup(cfg: Any, dotted: str) -> tuple[bool, Any]:
    node = cfg
    for part in dotted.split('.'):
        if hasattr(node, 'keys') and part in node.keys():
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _kind(value: Any) -> str:
    if value is None:
        return 'none'
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, (int, float)):
        return 'number'
    if isinstance(value, (list, tuple)):
        return 'sequence'
    if isinstance(value, Mapping):
        return 'dict'
    return type(value).__name__


def check_overrides(cfg: Config, options: Mapping[str, Any]) -> None:
    """Refuse ``--cfg-options`` whose value has another type than the one it replaces.

    Numbers replace numbers (int or float), sequences sequences, dicts dicts, booleans booleans;
    ``None`` on either side and keys the config does not have yet are accepted.

    Raises:
        ValueError: naming the key, the value given and the value it would replace.
    """
    for key, value in options.items():
        found, old = _lookup(cfg, key)
        if not found or old is None or value is None:
            continue
        if _kind(old) != _kind(value):
            raise ValueError(f'--cfg-options {key}={value!r}: expected a {_kind(old)} like the config\'s '
                             f'current value {old!r}, got a {_kind(value)}')


# ---------------------------------------------------------------------------- unknown keys
def _typed_dicts(node: Any, where: str) -> Iterator[tuple[str, Mapping]]:
    """Every dict with a string ``type`` under ``node``, with its key path."""
    if isinstance(node, Mapping):
        if isinstance(node.get('type'), str):
            yield where, node
        for key, value in node.items():
            yield from _typed_dicts(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _typed_dicts(value, f'{where}[{i}]')


def _check_keys(where: str, cfg: Mapping, target: Any, source: str) -> None:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if n != 'self' and p.kind != p.VAR_POSITIONAL]
    unknown = sorted(set(cfg) - {'type', '_scope_'} - set(accepted))
    if unknown:
        raise ValueError(f'{source}: {where} ({cfg["type"]}) has unknown key(s) {", ".join(unknown)}; '
                         f'valid keys are: {", ".join(accepted)}')


def check_config_keys(cfg: Config, source: str = 'config') -> None:
    """Check that every registered type in ``model``, the datasets and the evaluators gets only the
    keyword arguments its constructor takes (modules taking ``**kwargs`` are not checked).

    Raises:
        ValueError: naming the config, the key path, the type, the unknown keys and the valid ones.
    """
    from seg.registry import DATASETS, METRICS, MODELS

    sections = [('model', MODELS)] + [(f'{s}_dataloader', DATASETS) for s in ('train', 'val', 'test')] + \
        [(f'{s}_evaluator', METRICS) for s in ('val', 'test')]
    for section, registry in sections:
        if section not in cfg:
            continue
        for where, node in _typed_dicts(cfg[section], section):
            target = registry.module_dict.get(node['type'])
            if target is None and node['type'] in registry:
                target = registry.get(node['type'])
            if target is not None:
                _check_keys(where, node, target, source)


# ---------------------------------------------------------------------------- ignore_index
def _dataset_dicts(node: Any, where: str) -> Iterator[tuple[str, dict]]:
    """The dataset dicts of a dataloader's ``dataset`` (wrappers' ``dataset`` / ``datasets`` followed)."""
    if not isinstance(node, Mapping):
        return
    inner = node.get('dataset')
    many = node.get('datasets')
    if isinstance(inner, Mapping):
        yield from _dataset_dicts(inner, f'{where}.dataset')
    if isinstance(many, (list, tuple)):
        for i, d in enumerate(many):
            yield from _dataset_dicts(d, f'{where}.datasets[{i}]')
    if inner is None and many is None:
        yield where, node


def _accepts(node: Mapping, key: str, registry: Any) -> bool:
    """Whether the registered type of ``node`` takes the keyword ``key`` (unknown types: no)."""
    name = node.get('type')
    if not isinstance(name, str) or name not in registry:
        return False
    try:
        params = inspect.signature(registry.get(name)).parameters
    except (TypeError, ValueError):
        return False
    return key in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _ignore_slots(cfg: Config) -> Iterator[tuple[str, Mapping, str]]:
    """Every place that holds an ignore index: ``(key path, dict, key in that dict)``."""
    from seg.registry import DATASETS, METRICS, MODELS

    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if not isinstance(cfg.get(loader), Mapping):
            continue
        for where, ds in _dataset_dicts(cfg[loader], loader):
            if _accepts(ds, 'ignore_index', DATASETS):
                yield f'{where}.ignore_index', ds, 'ignore_index'
            for i, t in enumerate(ds.get('pipeline') or []):
                if isinstance(t, Mapping) and t.get('type') == 'Pad':
                    yield f'{where}.pipeline[{i}].seg_pad_val', t, 'seg_pad_val'
                elif isinstance(t, Mapping) and t.get('type') == 'RandomCrop':
                    yield f'{where}.pipeline[{i}].ignore_index', t, 'ignore_index'
    model = cfg.get('model')
    if isinstance(model, Mapping) and _accepts(model, 'ignore_index', MODELS):
        yield 'model.ignore_index', model, 'ignore_index'
        if isinstance(model.get('data_preprocessor'), Mapping):
            yield 'model.data_preprocessor.seg_pad_val', model['data_preprocessor'], 'seg_pad_val'
        for where, node in _typed_dicts({k: model.get(k) for k in ('loss', 'losses')}, 'model'):
            if _accepts(node, 'ignore_index', MODELS):
                yield f'{where}.ignore_index', node, 'ignore_index'
    for name in ('val_evaluator', 'test_evaluator'):
        for where, node in _typed_dicts(cfg.get(name), name):
            if _accepts(node, 'ignore_index', METRICS):
                yield f'{where}.ignore_index', node, 'ignore_index'


def _train_dataset_default(cfg: Config) -> int | None:
    """The ``ignore_index`` default of the train dataset type's constructor, if it has one."""
    from seg.registry import DATASETS

    for _, ds in _dataset_dicts(cfg.get('train_dataloader'), 'train_dataloader'):
        if _accepts(ds, 'ignore_index', DATASETS):
            param = inspect.signature(DATASETS.get(ds['type'])).parameters.get('ignore_index')
            if param is not None and isinstance(param.default, int):
                return param.default
    return None


def _segmentor_passes_it(where: str) -> bool:
    """Slots the segmentor fills from ``model.ignore_index`` itself, its label padding and its losses:
    checked here when a config sets them, never written (one place sets them: the segmentor)."""
    return where == 'model.data_preprocessor.seg_pad_val' or where.startswith(('model.loss.', 'model.loss[',
                                                                               'model.losses.'))



def resolve_ignore_index(cfg: Config) -> int:
    """Make the dataset's ``ignore_index`` the one value everywhere, unless set explicitly.

    The ignore index is read from the datasets, ``model.ignore_index`` (which the segmentor hands to
    its losses and its data preprocessor's label padding), explicit loss settings, ``Pad.seg_pad_val``
    and ``RandomCrop.ignore_index`` of the pipelines, and the ``IoUMetric`` evaluators. The settings
    a config makes explicitly must agree; the value is theirs, else the train dataset type's default,
    else 255, and it is written into every place that does not set it, but for the losses and the label
    padding, which the segmentor fills from ``model.ignore_index`` (the one place that sets them).

    Returns:
        The resolved ignore index.

    Raises:
        ValueError: two explicit settings disagree (both keys and values are named).
    """
    slots = list(_ignore_slots(cfg))
    explicit = [(where, node[key]) for where, node, key in slots if node.get(key) is not None]
    for where, value in explicit:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{where} must be an int, got {value!r}')
    values = {value for _, value in explicit}
    if len(values) > 1:
        first = explicit[0]
        other = next(e for e in explicit if e[1] != first[1])
        listing = ', '.join(f'{w}={v}' for w, v in explicit)
        raise ValueError(f'ignore_index is set two ways: {first[0]}={first[1]} but {other[0]}={other[1]}; '
                         f'set it once, on the dataset (all explicit settings: {listing})')
    if values:
        value = values.pop()
    else:
        default = _train_dataset_default(cfg)
        value = DEFAULT_IGNORE_INDEX if default is None else default
    for where, node, key in slots:
        if node.get(key) is None and not _segmentor_passes_it(where):
            node[key] = value
    return value


def model_without_ignore_index(model: Mapping) -> dict:
    """A copy of a model config without the ignore index its config resolved (the segmentor's, the label
    padding's and the losses'), so that it takes the one of the dataset it is trained on next."""
    import copy

    model = copy.deepcopy(dict(model))
    model.pop('ignore_index', None)
    if isinstance(model.get('data_preprocessor'), Mapping):
        model['data_preprocessor'] = {k: v for k, v in model['data_preprocessor'].items() if k != 'seg_pad_val'}
    for _, node in _typed_dicts({k: model.get(k) for k in ('loss', 'losses')}, 'model'):
        node.pop('ignore_index', None)
    return model


# ------------------------------------------------------------------------------- runtime
def resolve_runtime(cfg: Config, world_size: int = 1) -> Config:
    """Settings that depend on where the run happens.

    - ``total_batch_size`` (the recipe's batch over all processes) is split across processes.

    Normalisation layers are not converted here, nor by mmengine's Runner: each layer is what its
    config declares (``norm='SyncBN'`` builds ``torch.nn.SyncBatchNorm``, ``'BN'`` BatchNorm2d; see
    :mod:`seg.models.norm`). A ``sync_bn`` key (mmengine's conversion of every BatchNorm, 'BN' ones
    included) is set to None with a warning.
    """
    total = cfg.get('total_batch_size')
    if total:
        if total % world_size:
            raise ValueError(f'total_batch_size={total} is not divisible by the {world_size} processes; '
                             'set --cfg-options total_batch_size=N with N a multiple of the process count')
        cfg.train_dataloader.batch_size = total // world_size
    if cfg.get('sync_bn') is not None:
        import logging

        from mmengine.logging import print_log

        print_log(f'sync_bn={cfg.sync_bn!r} is ignored: the norm of each layer decides (norm=\'SyncBN\' builds '
                  'torch.nn.SyncBatchNorm, norm=\'BN\' BatchNorm2d); remove sync_bn from the config',
                  logger='current', level=logging.WARNING)
        cfg.sync_bn = None
    return cfg


# ------------------------------------------------------------------------- the training config
def resolve_training_config(config: str | os.PathLike | Config, work_dir: str | None = None,
                            resume: bool | str = False, amp: bool = False, launcher: str = 'none',
                            cfg_options: dict | None = None, precision: str | None = None,
                            channels_last: bool | str | None = None) -> Config:
    """The final config of a training run, which :class:`seg.engine.SegRunner` builds from as it is.

    In order: the config read and checked (:func:`load_config`: overrides, keys, one ignore index);
    launcher and work dir; the per-process batch (:func:`resolve_runtime`); one visualizer name per run;
    the non-finite-loss policy checked against the optimizer wrapper; the precision and memory format of
    the device (stated in the log); what to resume from; under torchrun, the process-group backend, the
    statistics hook of per-process BatchNorms and, on CPU, gloo without device ids. Nothing of it is
    changed afterwards.

    Args: those of :func:`seg.apis.train.build_runner`.

    Raises:
        ValueError: a bad launcher, a config that cannot be stored as data in a checkpoint, or
            ``model.nonfinite_loss='skip'`` with an optimizer wrapper that cannot skip a step.
        FileNotFoundError: ``resume`` names a checkpoint that does not exist.
    """
    import os.path as osp
    import uuid

    import torch

    from .config_data import config_to_data

    cfg = load_config(config, cfg_options)
    if launcher not in ('none', 'pytorch'):
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}")
    cuda = torch.cuda.is_available()
    cfg.launcher = launcher
    name = osp.splitext(osp.basename(cfg.filename or 'config.py'))[0]
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    world_size = int(os.environ.get('WORLD_SIZE', '1')) if launcher == 'pytorch' else 1
    resolve_runtime(cfg, world_size)
    # mmengine keeps one Visualizer per name in a process: a second run with the default name would
    # log into the first run's folder. One name per run.
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.name = f"{cfg.visualizer.get('name', 'visualizer')}_{uuid.uuid4().hex[:8]}"
    _check_nonfinite_policy(cfg)
    _set_precision(cfg, precision, channels_last, amp, 'cuda' if cuda else 'cpu')
    if resume is True or resume == 'auto':
        cfg.resume = True
        cfg.load_from = None  # SegRunner then takes the newest readable checkpoint of work_dir
    elif resume:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume!r}: no such checkpoint (give a file, or auto for the '
                                    f'newest one in the work dir)')
        cfg.resume = True
        cfg.load_from = os.fspath(resume)
    if launcher == 'pytorch':
        backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'nccl') if cuda else 'gloo'
        cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dict(cfg.get('env_cfg', {}).get('dist_cfg', {}),
                                                                  backend=backend))
        # Layers declared 'BN' (and, on CPU, the SyncBN ones: SegRunner.build_model makes them BatchNorm,
        # gloo has no SyncBatchNorm kernel) keep per-process statistics: keep them equal across processes.
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='SyncNormStatsHook')]
        if not cuda:  # DDP on CPU processes: no device_ids (mmengine's default would call cuda.set_device)
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
    config_to_data(cfg)  # fail now, not at the first checkpoint, if the config is not plain data
    return cfg


def _set_precision(cfg: Config, precision: str | None, channels_last: bool | str | None, amp: bool,
                   device: str) -> None:
    """The run's precision and memory format, chosen for its device and stated in the log."""
    from mmengine.logging import print_log

    from .precision import amp_precision, resolve_precision, use_amp_wrapper

    requested = precision or cfg.get('precision', 'auto')
    if amp:
        requested = amp_precision(device)
    layout = cfg.get('channels_last', 'auto') if channels_last is None else channels_last
    chosen = resolve_precision(requested, device, layout)
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if chosen.name != 'fp32' and wrapper not in ('OptimWrapper', 'SegOptimWrapper', 'AutoAmpOptimWrapper'):
        # A wrapper of the config's own choosing (mmengine's AmpOptimWrapper, ...) keeps its precision.
        print_log(f'optim_wrapper.type={wrapper!r} decides the precision; not switching to {chosen.name}',
                  logger='current')
        chosen = resolve_precision('fp32', device, layout)
    else:
        use_amp_wrapper(cfg.optim_wrapper, chosen)
    cfg.precision, cfg.channels_last = chosen.name, chosen.channels_last
    print_log(f'training with {chosen.describe()}', logger='current')


def _check_nonfinite_policy(cfg: Config) -> None:
    from seg.registry import OPTIM_WRAPPERS

    from .optim_wrapper import SegOptimWrapper

    if cfg.model.get('nonfinite_loss', 'stop') != 'skip':
        return
    wrapper = cfg.get('optim_wrapper', {}).get('type', 'OptimWrapper')
    cls = OPTIM_WRAPPERS.get(wrapper) if isinstance(wrapper, str) else wrapper
    if not (isinstance(cls, type) and issubclass(cls, SegOptimWrapper)):
        raise ValueError(f"model.nonfinite_loss='skip' needs an optimizer wrapper that can skip a step: "
                         f"optim_wrapper.type={wrapper!r} cannot; use 'SegOptimWrapper' (or --amp)")
