"""Training through :class:`seg.engine.SegRunner` (mmengine's Runner with safe, exact checkpoints)."""
from __future__ import annotations

import os

from mmengine.config import Config

from seg.engine.config import resolve_training_config
from seg.engine.distributed import init_distributed
from seg.engine.runner import SegRunner


def build_runner(config: str | os.PathLike | Config, work_dir: str | None = None, resume: bool | str = False,
                 amp: bool = False, launcher: str = 'none', cfg_options: dict | None = None,
                 precision: str | None = None, channels_last: bool | str | None = None) -> SegRunner:
    """A ready runner for ``config``.

    Args:
        config: config path or Config.
        work_dir: where checkpoints and logs go (default ``work_dirs/<config name>``).
        resume: ``True`` or ``'auto'``: continue from the newest readable checkpoint in ``work_dir``, or
            start from scratch when there is none (one command line for a first start, a requeue and an
            elastic restart); a path: continue from that checkpoint. ``resume=True`` in the config does
            the same as ``'auto'``.
        amp: mixed precision whatever the hardware (bf16, or fp16 + GradScaler on GPUs without bf16).
        launcher: 'none' (one process) or 'pytorch' (torchrun + DDP).
        cfg_options: overrides, ``{'a.b': value}``.
        precision: 'auto' (bf16 where the hardware has native bf16, else fp32: see
            :mod:`seg.engine.precision`), 'fp32', 'bf16' or 'fp16'; default the config's ``precision``
            (``'auto'`` in the runtime base).
        channels_last: 'auto' (on with bf16 / fp16, and for fp32 on the CPU), True or False; default the config's
            ``channels_last`` (``'auto'`` in the runtime base).

    Raises:
        ValueError: a bad launcher, a config that cannot be stored as data in a checkpoint, or
            ``model.nonfinite_loss='skip'`` with an optimizer wrapper that cannot skip a step.
    """
    cfg = resolve_training_config(config, work_dir, resume, amp, launcher, cfg_options, precision, channels_last)
    if launcher == 'pytorch':
        # Joined here, with keys of its own per elastic restart (mmengine then finds the group formed).
        init_distributed(cfg.env_cfg.dist_cfg.backend)
    return SegRunner.from_cfg(cfg)


def train(config: str | os.PathLike | Config, **kwargs) -> SegRunner:
    """Train ``config`` (see :func:`build_runner` for the options); returns the finished runner.

    Raises:
        seg.engine.preemption.Preempted: SIGTERM / SIGUSR1 arrived; the checkpoint of the iteration
            it finished is written (its path is ``.checkpoint``).
    """
    runner = build_runner(config, **kwargs)
    runner.train()
    return runner
