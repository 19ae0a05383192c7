"""Training that survives preemption: SIGTERM / SIGUSR1 finish the iteration, save it, and exit.

Clusters and cloud spot instances stop a job with SIGTERM and kill it a little later (SLURM's
``KillWait``, 30 s by default; ``sbatch --signal=USR1@120`` sends SIGUSR1 two minutes ahead; torchrun
forwards SIGTERM to its workers when it tears a group down). While :class:`SegTrainLoop` runs, a
:class:`StopSignals` turns the first such signal into a request; after the current iteration every
process agrees on it (one all-reduce of a flag per iteration under DDP, so all ranks stop at the same
iteration), the checkpoint of that iteration is written atomically with every state an exact resume
needs, and :class:`Preempted` is raised. ``tools/train.py`` then says what to run next and exits with
:data:`PREEMPTED_EXIT_CODE`. A second signal while this happens is recorded and ignored: the save goes on,
and the file is written to a temporary name and renamed, so even a SIGKILL leaves the previous file
or the complete new one.

DataLoader workers ignore these signals (:func:`seg.worker_reports.note_reading` shields them), so a
signal sent to the whole process group, as SLURM does, does not kill them under the iteration.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

import torch
import torch.distributed as dist

__all__ = ['PREEMPTED_EXIT_CODE', 'STOP_SIGNALS', 'Preempted', 'StopSignals']

PREEMPTED_EXIT_CODE = 75
"""Exit code of a run stopped by a signal after saving its checkpoint: ``EX_TEMPFAIL`` of sysexits.h,
"a temporary failure; the user is invited to retry" (with ``--resume``)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on a signal after writing ``checkpoint`` at ``iteration``."""

    def __init__(self, signal_name: str, iteration: int, checkpoint: str) -> None:
        super().__init__(f'{signal_name} received: stopped after iteration {iteration} and saved {checkpoint}')
        self.signal_name = signal_name
        self.iteration = iteration
        self.checkpoint = checkpoint
        self.exit_code = PREEMPTED_EXIT_CODE


class StopSignals:
    """Records the first SIGTERM / SIGUSR1 while installed; the handlers only set a flag.

    Use as a context manager around the training loop (main thread only; elsewhere it installs nothing).
    """

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.received: int | None = None
        self.ignored = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: the interrupted code may hold the logging lock.
        if self.received is None:
            self.received = signum
        else:
            self.ignored += 1

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and issubclass(exc_type, Preempted):
            return  # stopping: later signals keep being counted, not obeyed, until the process exits
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ''

    def agreed(self) -> bool:
        """Whether any process received a stop signal (every rank gets the same answer)."""
        flag = self.received is not None
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return flag
        device = torch.device('cuda', torch.cuda.current_device()) if dist.get_backend() == 'nccl' \
            else torch.device('cpu')
        signum = torch.tensor([self.received or 0], dtype=torch.int64, device=device)
        dist.all_reduce(signum, op=dist.ReduceOp.MAX)
        if signum.item() and self.received is None:
            self.received = int(signum.item())  # another rank's signal: stop with it
        return bool(signum.item())
