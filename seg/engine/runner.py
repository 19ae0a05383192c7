"""mmengine's Runner with checkpoints that are safe to read and complete to resume from.

:class:`SegRunner` changes four things of ``mmengine.runner.Runner``:

* **saving** writes the checkpoint atomically (:func:`seg.engine.checkpoint.save_checkpoint_file`),
  stores the resolved config as plain data (``meta.cfg``), the message hub as plain data,
  and the random states of torch (CPU and CUDA), numpy and Python (``meta.rng``);
* **loading** (``load_from``) and **resuming** read through :func:`seg.engine.checkpoint.load_checkpoint`
  (``weights_only=True``; nothing stored is ever executed -- mmengine's own ``resume`` would parse a
  stored ``meta.config`` text as Python);
* **resuming** restores model, optimizer (and AMP grad scaler), LR schedule, iteration, message hub
  and random states; the train loop (:class:`seg.engine.loops.SegTrainLoop`) restores the sampler
  position and the random states right before the first step, so the run continues bit for bit;
* ``--resume`` takes the newest *readable* checkpoint: an unreadable latest one is reported and
  the one before it is used.
"""
from __future__ import annotations

import logging
import os.path as osp
import time

import mmengine
import torch
from mmengine.dist import master_only
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import weights_to_cpu
from torch import nn

from seg.models.norm import to_batchnorm
from seg.registry import RUNNERS

from .checkpoint import (
    from_plain,
    load_checkpoint,
    load_state_into,
    resume_candidates,
    save_checkpoint_file,
    to_plain,
)
from .config_data import DATA_KEY, config_to_data
from .precision import channels_last_model
from .rng import get_rng_state

__all__ = ['SegRunner']


@RUNNERS.register_module()
class SegRunner(Runner):
    """mmengine's Runner with safe, atomic, complete checkpoints (see the module docstring)."""

    def build_model(self, model):
        """mmengine's, then, before any DDP wrapping: BatchNorm for SyncBatchNorm under DDP on CPU
        processes (gloo has no SyncBatchNorm kernel; :class:`seg.engine.hooks.SyncNormStatsHook` keeps
        the statistics of the processes equal instead), and the memory format of the run
        (``cfg.channels_last``). Layers declared ``'BN'`` are never converted."""
        model = super().build_model(model)
        if self.distributed and not torch.cuda.is_available():
            synced = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
            if synced:
                model = to_batchnorm(model)
                self.logger.info(f'DDP on CPU processes (gloo has no SyncBatchNorm kernel): {synced} '
                                 'SyncBatchNorm layers run as BatchNorm')
        return channels_last_model(model) if self.cfg.get('channels_last') else model

    def _module(self):
        return self.model.module if is_model_wrapper(self.model) else self.model

    # ------------------------------------------------------------------------------ saving
    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, file_client_args: dict | None = None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True,
                        meta: dict | None = None, by_epoch: bool = True, backend_args: dict | None = None) -> None:
        """Write ``out_dir/filename`` atomically (the signature is mmengine's; the file backends are not used)."""
        meta = dict(meta or {})
        meta.setdefault('epoch', self.epoch + 1 if by_epoch else self.epoch)
        meta.setdefault('iter', self.iter if by_epoch else self.iter + 1)
        loop = self._train_loop if not isinstance(self._train_loop, dict) else None
        snapshot = getattr(loop, 'rng_snapshot', None)
        meta.update({DATA_KEY: config_to_data(self.cfg), 'seed': self.seed,
                     'experiment_name': self.experiment_name, 'time': time.strftime('%Y%m%d_%H%M%S'),
                     'mmengine_version': mmengine.__version__,
                     'rng': snapshot if snapshot is not None else get_rng_state()})
        if hasattr(self.train_dataloader.dataset, 'metainfo'):
            meta['dataset_meta'] = self.train_dataloader.dataset.metainfo
        checkpoint = {'meta': to_plain(meta), 'state_dict': weights_to_cpu(self._module().state_dict()),
                      'message_hub': to_plain(self.message_hub.state_dict())}
        if save_optimizer:
            if not isinstance(self.optim_wrapper, OptimWrapper):
                raise TypeError(f'optim_wrapper must be an OptimWrapper to be saved, got {type(self.optim_wrapper)}')
            checkpoint['optimizer'] = to_plain(self.optim_wrapper.state_dict())
        if save_param_scheduler and self.param_schedulers is not None:
            schedulers = self.param_schedulers
            if isinstance(schedulers, dict):
                checkpoint['param_schedulers'] = {k: [s.state_dict() for s in v] for k, v in schedulers.items()}
            else:
                checkpoint['param_schedulers'] = [s.state_dict() for s in schedulers]
        self.call_hook('before_save_checkpoint', checkpoint=checkpoint)
        save_checkpoint_file(checkpoint, osp.join(out_dir, filename))

    # ----------------------------------------------------------------------------- loading
    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list | None = None) -> dict:
        """Load weights (``load_from``): the safe reader, keys not in the checkpoint are reported."""
        checkpoint = load_checkpoint(filename)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in checkpoint['state_dict'].items()}
        load_state_into(self._module(), state, filename, strict=strict)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename: str, resume_optimizer: bool = True, resume_param_scheduler: bool = True,
               map_location='default') -> None:
        """Continue from ``filename``: everything that decides the next step is restored."""
        checkpoint = load_checkpoint(filename)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        load_state_into(self._module(), checkpoint['state_dict'], filename, strict=True)
        meta = checkpoint.get('meta') or {}
        self.train_loop._epoch = int(meta.get('epoch', 0))
        self.train_loop._iter = int(meta.get('iter', 0))
        resumed_seed = meta.get('seed')
        if resumed_seed is not None and resumed_seed != self.seed:
            self.logger.warning(f'the checkpoint was trained with seed {resumed_seed}, this run has seed '
                                f'{self.seed}: continuing with the checkpoint\'s')
            self._randomness_cfg.update(seed=resumed_seed)
            self.set_randomness(**self._randomness_cfg)
        self.message_hub.load_state_dict(from_plain(checkpoint['message_hub']))
        if 'optimizer' in checkpoint and resume_optimizer:
            self.optim_wrapper = self.build_optim_wrapper(self.optim_wrapper)
            self.optim_wrapper.load_state_dict(checkpoint['optimizer'])
        if 'param_schedulers' in checkpoint and resume_param_scheduler and self.param_schedulers is not None:
            self.param_schedulers = self.build_param_scheduler(self.param_schedulers)
            saved = checkpoint['param_schedulers']
            if isinstance(self.param_schedulers, dict):
                for name, schedulers in self.param_schedulers.items():
                    for scheduler, state in zip(schedulers, saved[name]):
                        scheduler.load_state_dict(state)
            else:
                for scheduler, state in zip(self.param_schedulers, saved):
                    scheduler.load_state_dict(state)
        if hasattr(self.train_loop, 'resume_rng'):
            self.train_loop.resume_rng = meta.get('rng')
        self._has_loaded = True
        self.logger.info(f'resumed from {filename}: epoch {self.epoch}, iter {self.iter}')

    def load_or_resume(self) -> None:
        """``load_from`` or ``--resume``; resuming takes the newest checkpoint that can be read."""
        if self._has_loaded:
            return
        if self._resume and self._load_from is not None:
            self.resume(self._load_from)
        elif self._resume:
            candidates = resume_candidates(self.work_dir)
            if not candidates:
                self.logger.info(f'no checkpoint in {self.work_dir} to resume from: starting from scratch')
            for path in candidates:
                try:
                    self.resume(path)
                    break
                except (ValueError, KeyError, RuntimeError) as exc:
                    print_log(f'cannot resume from {path}: {exc}; trying the checkpoint before it',
                              logger='current', level=logging.WARNING)
            else:
                if candidates:
                    raise RuntimeError(f'no checkpoint in {self.work_dir} could be resumed from '
                                       f'(tried {", ".join(candidates)})')
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)
        self._has_loaded = True
