"""Training through :class:`seg.engine.SegRunner` (mmengine's Runner with safe, exact checkpoints)."""
from __future__ import annotations

import os
import os.path as osp
import uuid

from mmengine.config import Config

from seg.engine.config_data import config_to_data
from seg.engine.distributed import init_distributed
from seg.engine.runner import SegRunner

from .config import import_all, load_config, resolve_runtime


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
        channels_last: 'auto' (on with bf16 / fp16), True or False; default the config's
            ``channels_last`` (``'auto'`` in the runtime base).

    Raises:
        ValueError: a bad launcher, a config that cannot be stored as data in a checkpoint, or
            ``model.nonfinite_loss='skip'`` with an optimizer wrapper that cannot skip a step.
    """
    import_all()
    cfg = load_config(config, cfg_options)
    if launcher not in ('none', 'pytorch'):
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}")
    cfg.launcher = launcher
    name = osp.splitext(osp.basename(cfg.filename or 'config.py'))[0]
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    world_size = int(os.environ.get('WORLD_SIZE', '1')) if launcher == 'pytorch' else 1
    resolve_runtime(cfg, world_size)
    # mmengine keeps one Visualizer per name in a process: a second run with the default name would
    # log into the first run's folder. One name per run.
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.name = f"{cfg.visualizer.get('name', 'visualizer')}_{uuid.uuid4().hex[:8]}"
    _check_nonfinite_policy(cfg)
    _set_precision(cfg, precision, channels_last, amp)
    if resume is True or resume == 'auto':
        cfg.resume = True
        cfg.load_from = None  # SegRunner then takes the newest readable checkpoint of work_dir
    elif resume:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume!r}: no such checkpoint (give a file, or auto for the '
                                    f'newest one in the work dir)')
        cfg.resume = True
        cfg.load_from = os.fspath(resume)
    if launcher == 'pytorch':
        # Joined here, with keys of its own per elastic restart (mmengine then finds the group formed).
        backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'nccl') if _cuda() else 'gloo'
        init_distributed(backend)
        # Layers declared 'BN' (and, on CPU, the SyncBN ones: SegRunner.build_model makes them BatchNorm,
        # gloo has no SyncBatchNorm kernel) keep per-process statistics: keep them equal across processes.
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='SyncNormStatsHook')]
    if launcher == 'pytorch' and not _cuda():
        # DDP on CPU processes: gloo, no device_ids. mmengine's own init would call cuda.set_device.
        cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dict(backend='gloo'))
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
    config_to_data(cfg)  # fail now, not at the first checkpoint, if the config is not plain data
    return SegRunner.from_cfg(cfg)


def _set_precision(cfg: Config, precision: str | None, channels_last: bool | str | None, amp: bool) -> None:
    """The run's precision and memory format, chosen for its device and stated in the log."""
    import torch
    from mmengine.logging import print_log

    from seg.engine.precision import amp_precision, resolve_precision, use_amp_wrapper

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    requested = precision or cfg.get('precision', 'auto')
    if amp:
        requested = amp_precision(device)
    layout = cfg.get('channels_last', 'auto') if channels_last is None else channels_last
    chosen = resolve_precision(requested, device, layout)
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if chosen.name != 'fp32' and wrapper not in ('OptimWrapper', 'SegOptimWrapper', 'AutoAmpOptimWrapper'):
        # A wrapper of the config's own choosing (mmengine's AmpOptimWrapper, ...) keeps its precision.
        print_log(f'optim_wrapper.type={wrapper!r} decides the precision; not switching to {chosen.name}',
                  logger='current')
        chosen = resolve_precision('fp32', device, layout)
    else:
        use_amp_wrapper(cfg.optim_wrapper, chosen)
    cfg.precision, cfg.channels_last = chosen.name, chosen.channels_last
    print_log(f'training with {chosen.describe()}', logger='current')


def _check_nonfinite_policy(cfg: Config) -> None:
    from seg.engine.optim_wrapper import SegOptimWrapper
    from seg.registry import OPTIM_WRAPPERS

    if cfg.model.get('nonfinite_loss', 'stop') != 'skip':
        return
    wrapper = cfg.get('optim_wrapper', {}).get('type', 'OptimWrapper')
    cls = OPTIM_WRAPPERS.get(wrapper) if isinstance(wrapper, str) else wrapper
    if not (isinstance(cls, type) and issubclass(cls, SegOptimWrapper)):
        raise ValueError(f"model.nonfinite_loss='skip' needs an optimizer wrapper that can skip a step: "
                         f"optim_wrapper.type={wrapper!r} cannot; use 'SegOptimWrapper' (or --amp)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train(config: str | os.PathLike | Config, **kwargs) -> SegRunner:
    """Train ``config`` (see :func:`build_runner` for the options); returns the finished runner.

    Raises:
        seg.engine.preemption.Preempted: SIGTERM / SIGUSR1 arrived; the checkpoint of the iteration
            it finished is written (its path is ``.checkpoint``).
    """
    runner = build_runner(config, **kwargs)
    runner.train()
    return runner
