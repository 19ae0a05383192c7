"""Checkpoints that load under PyTorch's default ``weights_only=True``.

mmengine stores its message hub in every checkpoint: ``HistoryBuffer`` objects holding numpy arrays
and bound methods, which the safe unpickler rightly refuses (allowing them would mean allowing
``getattr``). :class:`SafeCheckpointHook` stores them as plain lists instead and rebuilds the
buffers after loading, so nothing needs to be allow-listed and the safety stays on.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from seg.registry import HOOKS

_BUFFER_TAG = '__history_buffer__'


def to_plain(obj: Any) -> Any:
    """numpy arrays / scalars and HistoryBuffers -> lists, floats and tagged dicts (recursively)."""
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {_BUFFER_TAG: True, 'log_history': to_plain(log), 'count_history': to_plain(count),
                'max_length': obj.max_length}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items())  # dict or OrderedDict
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` for the tagged HistoryBuffers."""
    if isinstance(obj, dict):
        if obj.get(_BUFFER_TAG):
            return HistoryBuffer(obj['log_history'], obj['count_history'], obj['max_length'])
        return {k: from_plain(v) for k, v in obj.items()}
    return obj


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Keeps checkpoints free of pickled classes: message hub as plain data, restored on load."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('message_hub', 'meta'):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = from_plain(checkpoint['message_hub'])


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; clear errors for a missing or foreign file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - say which file and why
        raise ValueError(f'cannot load checkpoint {path!r} with weights_only=True: {exc}') from exc
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'{path!r} is not a seg checkpoint: expected a dict with a "state_dict" key')
    return ckpt


def config_from_checkpoint(ckpt: dict, path: str = 'checkpoint') -> Config:
    """The resolved config a training run stored in its checkpoint's meta."""
    text = (ckpt.get('meta') or {}).get('cfg')
    if not text:
        raise ValueError(f'{path!r} carries no config (meta.cfg); pass --config CONFIG')
    return Config.fromstring(text, file_format='.py')
