"""Which file each DataLoader worker is reading, and workers that leave stopping to the main process, kept in shared memory for crash reports (a bottom-layer
module: the datasets record, the training and evaluation loops report).

A worker killed by a signal (a segfault in a decoder, the OOM killer) takes its Python state with
it; PyTorch then only says "DataLoader worker (pid 1234) exited unexpectedly". The datasets call
:func:`note_reading` before opening a file; the slots live in memory shared with the workers
(created at import, inherited by forked workers), so :func:`explain_worker_crash` can add "worker
pid 1234 was reading /data/x.png" to that error. With the 'spawn' start method the workers get
their own table and the report says the file is unknown.

A forked worker ignores SIGTERM and SIGUSR1 (set on its first :func:`note_reading`) until the main
process exits: a cluster signals the whole process group, and a worker that died of it would abort
the iteration the main process is finishing before it saves (:mod:`seg.engine.preemption`). A flag in
shared memory, set by the main process at exit, lets the terminate of the exit's clean-up end the
workers. Workers of the 'spawn' / 'forkserver' start methods share no flag and are not shielded.
"""
from __future__ import annotations

import atexit
import ctypes
import multiprocessing as mp
import multiprocessing.util  # noqa: F401  (its exit function is registered first, so it runs after ours)
import os
import re
import signal

from torch.utils.data import get_worker_info

__all__ = ['explain_worker_crash', 'note_reading', 'reading_of']

_SLOTS = 64
_WIDTH = 1024
_PATHS = mp.RawArray(ctypes.c_char, _SLOTS * _WIDTH)
_PIDS = mp.RawArray(ctypes.c_long, _SLOTS)


_CREATOR = os.getpid()
_MAIN_EXITING = mp.RawValue(ctypes.c_bool, False)
_SHIELDED: set[int] = set()


@atexit.register  # registered after multiprocessing's own exit function, so it runs before it
def _main_exiting() -> None:
    if os.getpid() == _CREATOR:
        _MAIN_EXITING.value = True


def _on_stop_signal(signum: int, frame) -> None:
    if _MAIN_EXITING.value:  # the main process is exiting and terminates its workers: end cleanly (exit
        os._exit(0)  # code 0; PyTorch's SIGCHLD handler in the main process reports any other end as a crash)


def _shield_worker() -> None:
    """Ignore SIGTERM / SIGUSR1 in a forked worker until the main process exits."""
    if os.getpid() in _SHIELDED or os.getpid() == _CREATOR:
        return
    _SHIELDED.add(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, _on_stop_signal)


def note_reading(path: str) -> None:
    """Record, for the current DataLoader worker, the file it starts reading (no-op in the main process);
    the first call in a worker makes it ignore SIGTERM / SIGUSR1."""
    info = get_worker_info()
    if info is None:
        return
    _shield_worker()
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
