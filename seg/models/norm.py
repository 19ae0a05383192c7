"""Normalisation layers chosen by name.

The name decides, and nothing else converts a layer: ``'BN'`` builds ``nn.BatchNorm2d``,
``'SyncBN'`` builds ``torch.nn.SyncBatchNorm``. SyncBatchNorm synchronises the batch statistics
of the processes of a DDP run on GPUs; in one process (or with no process group, or in eval mode)
it computes exactly what BatchNorm2d computes. CPU processes on gloo have no SyncBatchNorm kernel:
there the runner (:meth:`seg.engine.runner.SegRunner.build_model`) turns every SyncBatchNorm back
into BatchNorm (:func:`to_batchnorm`) and :class:`seg.engine.hooks.SyncNormStatsHook` keeps the
statistics of the processes equal. Layers declared ``'BN'`` stay BatchNorm2d everywhere.

The BatchNorms an attention module builds itself (SK, GAM, coordinate attention, NAM) have no name
of their own: they follow the norm of the backbone or head that holds the module (:func:`match_norm`).
"""
from __future__ import annotations

from torch import nn

NORMS = ('BN', 'SyncBN', 'GN', 'none')

__all__ = ['NORMS', 'build_norm', 'match_norm', 'to_batchnorm', 'to_sync_batchnorm']


def build_norm(norm: str, channels: int) -> nn.Module:
    """Return a 2-D normalisation layer: 'BN' (BatchNorm2d), 'SyncBN' (SyncBatchNorm), 'GN' (32 groups) or 'none'."""
    if norm == 'BN':
        return nn.BatchNorm2d(channels)
    if norm == 'SyncBN':
        return nn.SyncBatchNorm(channels)
    if norm == 'GN':
        groups = 32 if channels % 32 == 0 else 1
        return nn.GroupNorm(groups, channels)
    if norm == 'none':
        return nn.Identity()
    raise ValueError(f'unknown norm {norm!r}; valid norms are: {", ".join(NORMS)}')


def _replace(module: nn.Module, convert) -> nn.Module:
    new = convert(module)
    if new is not None:
        return new
    for name, child in module.named_children():
        replaced = _replace(child, convert)
        if replaced is not child:
            module.add_module(name, replaced)
    return module


def _same_state(old: nn.modules.batchnorm._BatchNorm, new: nn.modules.batchnorm._BatchNorm):
    """``new`` holding ``old``'s parameters (the same tensors), statistics and mode."""
    if old.affine:
        new.weight, new.bias = old.weight, old.bias
    new.running_mean, new.running_var = old.running_mean, old.running_var
    new.num_batches_tracked = old.num_batches_tracked
    new.train(old.training)
    if hasattr(old, 'qconfig'):
        new.qconfig = old.qconfig
    return new


def to_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm1d`` / ``BatchNorm2d`` in it replaced by a ``SyncBatchNorm``
    holding the same parameters, statistics and mode (children are replaced in place; a module that
    is itself a BatchNorm is returned replaced). :func:`to_batchnorm` restores the original class."""
    def convert(m: nn.Module) -> nn.Module | None:
        if type(m) not in (nn.BatchNorm1d, nn.BatchNorm2d):
            return None
        sync = nn.SyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        sync.plain_type = type(m)  # what to_batchnorm turns it back into
        return _same_state(m, sync)

    return _replace(module, convert)


def to_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``SyncBatchNorm`` in it replaced by a BatchNorm holding the same
    parameters, statistics and mode: ``BatchNorm2d``, or the class :func:`to_sync_batchnorm`
    converted from (``BatchNorm1d`` for SK's squeeze). For processes without SyncBatchNorm kernels
    (DDP on CPU)."""
    def convert(m: nn.Module) -> nn.Module | None:
        if not isinstance(m, nn.SyncBatchNorm):
            return None
        cls = getattr(m, 'plain_type', nn.BatchNorm2d)
        return _same_state(m, cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats))

    return _replace(module, convert)


def match_norm(module: nn.Module, norm: str) -> nn.Module:
    """``module`` (an attention module built inside a backbone or head) with its own BatchNorms made
    SyncBatchNorm when the holder's ``norm`` is ``'SyncBN'``; unchanged otherwise."""
    return to_sync_batchnorm(module) if norm == 'SyncBN' else module
