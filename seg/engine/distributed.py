"""Joining the process group of a torchrun launch, so that an elastic restart works.

``torchrun --max-restarts=N`` restarts every worker of a group when one fails, and the new workers
meet in the same key-value store as the failed ones. ``init_process_group('env://')`` writes its
connection keys (gloo's addresses, NCCL's unique id) without a per-attempt prefix, so a restarted
worker can read the dead worker's address before its peer overwrites it and the group fails to form
("Connection refused"). :func:`init_distributed` joins through a ``PrefixStore`` named after
``TORCHELASTIC_RESTART_COUNT``: every attempt has keys of its own.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

__all__ = ['init_distributed']


def init_distributed(backend: str, timeout_s: float = 1800.0) -> None:
    """Join the group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``, ``LOCAL_RANK``), unless already joined.

    Args:
        backend: ``'nccl'`` (the process then uses GPU ``LOCAL_RANK``) or ``'gloo'``.
        timeout_s: how long collectives and the rendezvous wait.

    Raises:
        ValueError: a variable torchrun sets is missing (the script was not started by torchrun).
    """
    if dist.is_initialized():
        return
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise ValueError(f'--launcher pytorch needs the variables torchrun sets; {", ".join(missing)} missing: '
                         'start it with torchrun --nproc_per_node=N tools/train.py ... --launcher pytorch')
    rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    if backend == 'nccl':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    timeout = datetime.timedelta(seconds=timeout_s)
    host, port = os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT'])
    agent_hosts = os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True'
    store = dist.TCPStore(host, port, world_size, is_master=rank == 0 and not agent_hosts, timeout=timeout,
                          multi_tenant=not agent_hosts)
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    dist.init_process_group(backend, store=dist.PrefixStore(f'seg/attempt_{attempt}', store), rank=rank,
                            world_size=world_size, timeout=timeout)
