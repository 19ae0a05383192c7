"""Training / evaluation / inference glue over mmengine's Runner (logic here, tools stay thin)."""
from . import hooks, optim_wrapper  # noqa: F401  (registration)
from .checkpoint import SafeCheckpointHook, config_from_checkpoint, load_checkpoint

__all__ = ['SafeCheckpointHook', 'config_from_checkpoint', 'load_checkpoint']
