"""The iteration-based training loop, resumable bit for bit.

:class:`SegTrainLoop` is mmengine's ``IterBasedTrainLoop`` with three changes:

* resuming at iteration ``i`` moves a :class:`seg.datasets.SeededInfiniteSampler` to draw
  ``i * batch * world_size`` (O(1); mmengine loads and throws away ``i`` batches instead) and, right
  before the first step, restores the random states the checkpoint saved;
* validation runs inside :func:`seg.engine.rng.isolated_rng`, so it never moves the random
  states training continues with (a resumed run does not repeat the validation it resumes after);
* a DataLoader worker that dies is reported with the file it was reading;
* SIGTERM / SIGUSR1 finish the current iteration, write its checkpoint and raise
  :class:`seg.engine.preemption.Preempted` (every rank stops at the same iteration).
"""
from __future__ import annotations

import logging
import os.path as osp
from contextlib import contextmanager

import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from seg.registry import LOOPS
from seg.worker_reports import explain_worker_crash

from .preemption import Preempted, StopSignals
from .rng import isolated_rng, set_rng_state

__all__ = ['SegTrainLoop', 'report_worker_crash']


@contextmanager
def report_worker_crash():
    """Re-raise PyTorch's "DataLoader worker exited unexpectedly" with the file the worker was reading."""
    try:
        yield
    except RuntimeError as exc:
        detail = explain_worker_crash(exc)
        if detail is None:
            raise
        raise RuntimeError(f'{exc} ({detail})') from exc


@LOOPS.register_module()
class SegTrainLoop(IterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` that resumes exactly (see the module docstring).

    Args: those of ``IterBasedTrainLoop`` (``max_iters``, ``val_begin``, ``val_interval``, ...).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_rng: dict | None = None  # set by SegRunner.resume
        self.rng_snapshot: dict | None = None  # the training random states while validation runs

    def _seek(self) -> None:
        """Continue the data stream at iteration ``self._iter``."""
        sampler = self.dataloader.sampler
        if hasattr(sampler, 'start_at'):
            sampler.start_at(self._iter * self.dataloader.batch_size * getattr(sampler, 'world_size', 1))
            self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
            return
        print_log(f'the sampler {type(sampler).__name__} cannot seek: loading and skipping {self._iter} batches '
                  '(use SeededInfiniteSampler for an exact, instant resume)', logger='current',
                  level=logging.WARNING)
        for _ in range(self._iter):
            next(self.dataloader_iterator)

    def run(self):
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            self._seek()
        if self.resume_rng is not None:
            set_rng_state(self.resume_rng)
            self.resume_rng = None
        with StopSignals() as stop:
            while self._iter < self._max_iters and not self.stop_training:
                self.runner.model.train()
                with report_worker_crash():
                    data_batch = next(self.dataloader_iterator)
                self.run_iter(data_batch)
                if stop.agreed():
                    self._save_and_stop(stop)
                self._decide_current_val_interval()
                if (self.runner.val_loop is not None and self._iter >= self.val_begin
                        and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                    with isolated_rng() as state, report_worker_crash():
                        self.rng_snapshot = state
                        try:
                            self.runner.val_loop.run()
                        finally:
                            self.rng_snapshot = None
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def _save_and_stop(self, stop: StopSignals) -> None:
        """Write the checkpoint of the iteration just finished (what ``CheckpointHook`` would write
        after it), point ``last_checkpoint`` at it, and raise :class:`Preempted`."""
        runner = self.runner
        filename = f'iter_{self._iter}.pth'
        path = osp.join(runner.work_dir, filename)
        print_log(f'{stop.name} received: saving the checkpoint of iteration {self._iter} to {path}',
                  logger='current', level=logging.WARNING)
        runner.save_checkpoint(runner.work_dir, filename, meta=dict(epoch=self._epoch, iter=self._iter),
                               by_epoch=False)
        if runner.rank == 0:
            with open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                f.write(path)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank leaves before the checkpoint is complete
        if stop.ignored:
            print_log(f'{stop.ignored} more stop signal(s) arrived while saving; ignored', logger='current',
                      level=logging.WARNING)
        raise Preempted(stop.name, self._iter, path)
