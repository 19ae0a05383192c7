"""Loading and preparing mmengine configs."""
from __future__ import annotations

import importlib
import os

import torch
from mmengine.config import Config


def import_all() -> None:
    """Import every module that registers something (models, datasets, metrics, engine)."""
    for name in ('seg.models', 'seg.datasets', 'seg.evaluation', 'seg.engine'):
        importlib.import_module(name)


def load_config(config: str | os.PathLike | Config, cfg_options: dict | None = None) -> Config:
    """Read a config file (mmengine ``_base_`` style) and apply ``--cfg-options`` overrides."""
    if isinstance(config, Config):
        cfg = config
    else:
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist')
        cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.setdefault('default_scope', 'seg')
    return cfg


def resolve_runtime(cfg: Config, world_size: int = 1) -> Config:
    """Settings that depend on where the run happens.

    - ``total_batch_size`` (the recipe's batch over all processes) is split across processes.
    - SyncBN only where it has kernels (CUDA); CPU / gloo runs keep BatchNorm.
    """
    total = cfg.get('total_batch_size')
    if total:
        if total % world_size:
            raise ValueError(f'total_batch_size={total} is not divisible by the {world_size} processes; '
                             'set --cfg-options total_batch_size=N with N a multiple of the process count')
        cfg.train_dataloader.batch_size = total // world_size
    if not torch.cuda.is_available():
        cfg.sync_bn = None
    return cfg
