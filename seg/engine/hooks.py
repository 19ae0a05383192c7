"""Runner hooks: a progress bar over validation."""
from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from tqdm import tqdm

from seg.registry import HOOKS


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
