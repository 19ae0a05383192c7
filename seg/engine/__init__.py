"""Training / evaluation / inference glue over mmengine's Runner (logic here, tools stay thin)."""
from . import hooks, optim_wrapper  # noqa: F401  (registration)
from .checkpoint import allow_checkpoint_globals, load_checkpoint

allow_checkpoint_globals()

__all__ = ['allow_checkpoint_globals', 'load_checkpoint']
