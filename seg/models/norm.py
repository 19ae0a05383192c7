"""Normalisation layers chosen by name.

``'SyncBN'`` in a config means "synchronise across processes when there are several":
the model is built with plain BatchNorm and mmengine's Runner converts it to
``torch.nn.SyncBatchNorm`` under DDP on GPUs (``sync_bn='torch'`` in the runtime config),
so a single process, or CPU processes on gloo (where SyncBatchNorm has no kernel), keep BN.
"""
from __future__ import annotations

from torch import nn

NORMS = ('BN', 'SyncBN', 'GN', 'none')


def build_norm(norm: str, channels: int) -> nn.Module:
    """Return a 2-D normalisation layer: 'BN' / 'SyncBN' (BatchNorm2d), 'GN' (32 groups) or 'none'."""
    if norm in ('BN', 'SyncBN'):
        return nn.BatchNorm2d(channels)
    if norm == 'GN':
        groups = 32 if channels % 32 == 0 else 1
        return nn.GroupNorm(groups, channels)
    if norm == 'none':
        return nn.Identity()
    raise ValueError(f'unknown norm {norm!r}; valid norms are: {", ".join(NORMS)}')
