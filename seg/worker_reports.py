"""Which file each DataLoader worker is reading, kept in shared memory for crash reports (a bottom-layer
module: the datasets record, the training and evaluation loops report).

A worker killed by a signal (a segfault in a decoder, the OOM killer) takes its Python state with
it; PyTorch then only says "DataLoader worker (pid 1234) exited unexpectedly". The datasets call
:func:`note_reading` before opening a file; the slots live in memory shared with the workers
(created at import, inherited by forked workers), so :func:`explain_worker_crash` can add "worker
pid 1234 was reading /data/x.png" to that error. With the 'spawn' start method the workers get
their own table and the report says the file is unknown.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import re

from torch.utils.data import get_worker_info

__all__ = ['explain_worker_crash', 'note_reading', 'reading_of']

_SLOTS = 64
_WIDTH = 1024
_PATHS = mp.RawArray(ctypes.c_char, _SLOTS * _WIDTH)
_PIDS = mp.RawArray(ctypes.c_long, _SLOTS)


def note_reading(path: str) -> None:
    """Record, for the current DataLoader worker, the file it starts reading (no-op in the main process)."""
    info = get_worker_info()
    if info is None:
        return
    slot = info.id % _SLOTS
    data = os.fsencode(path)[:_WIDTH - 1] + b'\0'
    start = slot * _WIDTH
    _PATHS[start:start + len(data)] = data
    _PIDS[slot] = os.getpid()


def reading_of(pid: int) -> str | None:
    """The last file the worker process ``pid`` started reading, if it recorded one."""
    for slot in range(_SLOTS):
        if _PIDS[slot] == pid:
            raw = bytes(_PATHS[slot * _WIDTH:(slot + 1) * _WIDTH]).split(b'\0', 1)[0]
            return os.fsdecode(raw)
    return None


def explain_worker_crash(exc: BaseException) -> str | None:
    """For PyTorch's "DataLoader worker (pid X) ..." errors, which file each named worker was reading."""
    text = str(exc)
    if 'DataLoader worker' not in text:
        return None
    pids = [int(p) for p in re.findall(r'\d+', ' '.join(re.findall(r'pid\(?s?\)? ?([\d, ]+)', text)))]
    parts = [f'worker pid {pid} was reading {reading_of(pid) or "an unknown file"}' for pid in pids]
    return '; '.join(parts) if parts else None
