"""Training / evaluation glue over mmengine: the runner, the loop, hooks, optimizer wrappers,
safe checkpoints (logic here, tools stay thin)."""
from . import hooks, loops, optim_wrapper, runner  # noqa: F401  (registration)
from .checkpoint import config_from_checkpoint, load_checkpoint, load_state_into, save_checkpoint_file
from .config_data import config_from_data, config_to_data, literal_config
from .loops import SegTrainLoop
from .optim_wrapper import AutoAmpOptimWrapper, SegOptimWrapper
from .runner import SegRunner

__all__ = ['AutoAmpOptimWrapper', 'SegOptimWrapper', 'SegRunner', 'SegTrainLoop', 'config_from_checkpoint',
           'config_from_data', 'config_to_data', 'literal_config', 'load_checkpoint', 'load_state_into',
           'save_checkpoint_file']
