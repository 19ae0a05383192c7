"""Runner hooks: a progress bar over validation; BatchNorm statistics kept equal across processes."""
from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn
from tqdm import tqdm

from seg.registry import HOOKS

__all__ = ['SyncNormStatsHook', 'ValProgressBarHook']


@HOOKS.register_module()
class ValProgressBarHook(Hook):
    """A tqdm bar over the validation iterations (main process only)."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def before_val_epoch(self, runner) -> None:
        if is_main_process():
            self._bar = tqdm(total=len(runner.val_dataloader), desc='val', unit='img', leave=False,
                             dynamic_ncols=True)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@HOOKS.register_module()
class SyncNormStatsHook(Hook):
    """Average the running statistics of the BatchNorms over the processes after every training
    iteration, before any checkpoint is written or validation runs.

    Under DDP a BatchNorm that is not synchronised (declared ``'BN'``, or a SyncBN one on CPU
    processes, where the runner makes it BatchNorm: gloo has no SyncBatchNorm kernel) updates its
    running statistics from its own process's batches, so they drift apart: each process would
    validate a different model, and the checkpoint (process 0's) would be yet another. Averaging them
    each step keeps one model on every process, the one saved in the checkpoint. The statistics of
    ``SyncBatchNorm`` layers are equal already, and other buffers are constants: both are left alone.
    """

    priority = 'ABOVE_NORMAL'  # before the CheckpointHook (VERY_LOW) of the same iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        buffers = [b for m in model.modules()
                   if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
                   for b in m.buffers(recurse=False) if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()
