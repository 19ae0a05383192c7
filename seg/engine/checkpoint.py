"""Checkpoint files: the one reader, atomic writes, and where ``--resume`` looks.

Every checkpoint ``seg`` opens -- ``tools/eval.py``, ``tools/infer.py``, ``--resume``,
``load_from``, the attention visualiser, the converter -- is read by :func:`load_checkpoint`:
``torch.load(weights_only=True)`` (tensors and plain containers only), and the config it carries
is plain data rebuilt without executing anything (:mod:`seg.engine.config_data`). A checkpoint is
written by :func:`save_checkpoint_file` to a temporary file that is flushed, fsynced and renamed,
so a process killed while it saves never leaves a truncated file where ``--resume`` looks.

mmengine's message hub holds ``HistoryBuffer`` objects, which the safe unpickler rightly refuses;
:func:`to_plain` stores them as tagged lists and :func:`from_plain` rebuilds them.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

from seg.models.weights import read_weights_file

from .config_data import DATA_KEY, config_from_data, literal_config

__all__ = ['config_from_checkpoint', 'from_plain', 'load_checkpoint', 'load_state_into', 'resume_candidates',
           'save_checkpoint_file', 'to_plain']

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


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely: ``weights_only=True``, clear errors for a missing or foreign file.

    Args:
        path: a checkpoint written by ``seg`` (or any ``{'state_dict': ...}`` file, e.g. mmsegmentation's).

    Returns:
        The checkpoint dict; its ``state_dict`` has the key names of the current code (older names
        are renamed, see :func:`seg.engine.migration.migrate_state_dict`).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is unreadable, truncated, refused by the safe unpickler, or not a dict
            with a ``state_dict``.
    """
    from .migration import migrate_state_dict

    path = os.fspath(path)
    ckpt = read_weights_file(path, 'checkpoint')
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        raise ValueError(f'{path!r} is not a checkpoint: expected a dict with a "state_dict" key, '
                         f'got {type(ckpt).__name__}' + (f' with keys {sorted(ckpt)[:8]}' if isinstance(ckpt, dict)
                                                         else ''))
    ckpt['state_dict'] = migrate_state_dict(ckpt['state_dict'])
    return ckpt


def load_state_into(model: torch.nn.Module, state: dict, ckpt_path: str, config_name: str = 'the config',
                    strict: bool = True) -> None:
    """Load ``state`` into ``model``; a shape mismatch (another class count, say) or, with ``strict``,
    a missing or unexpected key is a ``ValueError`` naming the key, both shapes and both files.
    Without ``strict`` the keys that do not match are logged."""
    from mmengine.logging import print_log

    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            hint = ''
            if key.endswith(('cls.1.weight', 'cls.1.bias', 'conv_seg.weight', 'conv_seg.bias')) \
                    and value.shape[0] != own[key].shape[0]:
                hint = (f': the checkpoint predicts {value.shape[0]} classes but {config_name} '
                        f'builds {own[key].shape[0]} (model.num_classes)')
            raise ValueError(f'checkpoint {ckpt_path!r} does not fit {config_name}: {key} has shape '
                             f'{tuple(value.shape)}, the model expects {tuple(own[key].shape)}{hint}')
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if (missing or unexpected) and strict:
        raise ValueError(f'checkpoint {ckpt_path!r} does not fit {config_name} (another architecture?): '
                         f'{len(missing)} missing keys (e.g. {missing[:3]}), '
                         f'{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})')
    if missing or unexpected:
        print_log(f'loaded {ckpt_path}: {len(missing)} model keys not in it (e.g. {missing[:3]}), '
                  f'{len(unexpected)} of its keys unused (e.g. {unexpected[:3]})', logger='current',
                  level=30)
    model.load_state_dict(state, strict=strict)


def config_from_checkpoint(ckpt: dict, path: str = 'checkpoint') -> Config:
    """The resolved config a training run stored in its checkpoint, rebuilt as data.

    New checkpoints carry it as a dict of plain data (``meta.cfg``); older ones as Python text in
    the same key, which is parsed as literals only and never executed.

    Raises:
        ValueError: the checkpoint carries no config, or one that is not plain data / literal text.
    """
    meta = ckpt.get('meta') or {}
    stored = meta.get(DATA_KEY)
    if isinstance(stored, dict):
        return config_from_data(stored, path)
    if isinstance(stored, str) and stored.strip():
        return config_from_data(literal_config(stored, f'{path} (meta.{DATA_KEY})'), path)
    raise ValueError(f'{path!r} carries no config (meta.{DATA_KEY}); pass --config CONFIG')


def save_checkpoint_file(checkpoint: dict, path: str | os.PathLike) -> None:
    """Write ``checkpoint`` to ``path`` atomically: temporary file, flush, fsync, rename, fsync the folder.

    A process killed at any moment leaves either the old file (or none) or the complete new one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. no directory handles on this platform: the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resume_candidates(work_dir: str) -> list[str]:
    """Checkpoints ``--resume`` may continue from, best first.

    The file named in ``work_dir/last_checkpoint`` (when that is readable and exists), then every
    ``iter_N.pth`` / ``epoch_N.pth`` of ``work_dir`` from the highest N down, so that an unreadable
    latest checkpoint falls back to the one before it.
    """
    found = []
    pointer = os.path.join(work_dir, 'last_checkpoint')
    try:
        with open(pointer) as f:
            named = f.read().strip()
        if named and os.path.isfile(named):
            found.append(named)
    except (OSError, UnicodeDecodeError):
        pass

    def step(path: str) -> int:
        m = re.fullmatch(r'(?:iter|epoch)_(\d+)\.pth', os.path.basename(path))
        return int(m.group(1)) if m else -1

    numbered = [p for p in glob.glob(os.path.join(work_dir, '*.pth')) if step(p) >= 0]
    for path in sorted(numbered, key=step, reverse=True):
        if not any(os.path.samefile(path, other) for other in found):
            found.append(path)
    return found
