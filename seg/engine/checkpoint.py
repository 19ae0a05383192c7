"""Checkpoints under PyTorch's default ``weights_only`` loading.

mmengine stores its message hub (``HistoryBuffer`` objects holding numpy arrays) in every
checkpoint; rather than turning the safety off, the few classes it needs are allow-listed.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from mmengine.config import Config


def _safe_globals() -> list[Any]:
    from mmengine.logging.history_buffer import HistoryBuffer

    items: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct
                        if hasattr(np, 'core') else np._core.multiarray._reconstruct]
    # numpy >= 1.25 pickles dtypes as instances of their DType classes (np.dtypes.Float64DType...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        items += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    items += [np.float64, np.float32, np.int64, np.int32, np.bool_]
    return items


def allow_checkpoint_globals() -> None:
    """Allow-list what mmengine's checkpoints hold besides tensors and plain containers."""
    torch.serialization.add_safe_globals(_safe_globals())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; clear errors for a missing or foreign file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    allow_checkpoint_globals()
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'{path!r} is not a seg checkpoint: expected a dict with a "state_dict" key')
    return ckpt


def config_from_checkpoint(ckpt: dict, path: str = 'checkpoint') -> Config:
    """The resolved config a training run stored in its checkpoint's meta."""
    text = (ckpt.get('meta') or {}).get('cfg')
    if not text:
        raise ValueError(f'{path!r} carries no config (meta.cfg); pass --config CONFIG')
    return Config.fromstring(text, file_format='.py')
