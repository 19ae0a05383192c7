"""Optimizer wrappers: one that skips non-finite steps, and mixed precision that also works on CPU.

:class:`SegOptimWrapper` is mmengine's ``OptimWrapper`` plus one rule: a non-finite loss (which
the segmentor returns as NaN on every process when ``model.nonfinite_loss='skip'``) updates
nothing. The backward still runs, so that DDP's gradient all-reduce happens on every process
alike, then the gradients are dropped and the optimizer does not step.

mmengine's AmpOptimWrapper refuses to run without an accelerator; :class:`AutoAmpOptimWrapper`
runs the forward under autocast to the dtype it is given (``seg.engine.precision.use_amp_wrapper``
writes it from the run's resolved precision), or, when none is given, to what ``--amp`` means on the
device (:func:`seg.engine.precision.amp_precision`: bf16, fp16 with a GradScaler on CUDA devices
without bf16). Which precision ``'auto'`` picks is decided in one place only,
:func:`seg.engine.precision.resolve_precision`.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from seg.registry import OPTIM_WRAPPERS

from .precision import amp_precision, resolve_precision


@OPTIM_WRAPPERS.register_module()
class SegOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` that skips the update of a step whose loss is NaN or Inf."""

    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None) -> None:
        if bool(torch.isfinite(loss.detach())):
            return super().update_params(loss, step_kwargs, zero_kwargs)
        self.backward(loss)  # keeps DDP's all-reduce in step on every process
        self.zero_grad(**(zero_kwargs or {}))
        self.skipped_steps = getattr(self, 'skipped_steps', 0) + 1


@OPTIM_WRAPPERS.register_module()
class AutoAmpOptimWrapper(SegOptimWrapper):
    """OptimWrapper running the forward under autocast to ``dtype`` (``'bfloat16'``, or ``'float16'`` with a
    GradScaler, CUDA only); ``None``: what ``--amp`` means on the model's device (``amp_precision``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, dtype: str | None = None, **kwargs) -> None:
        super().__init__(optimizer, **kwargs)
        if dtype not in (None, 'bfloat16', 'float16'):
            raise ValueError(f"AutoAmpOptimWrapper dtype must be 'bfloat16', 'float16' or None (what --amp means "
                             f"on the device), got {dtype!r}")
        self.dtype_name = dtype
        self.cast_dtype: torch.dtype | None = None
        self.device_type: str | None = None
        self.loss_scaler: torch.amp.GradScaler | None = None
        self._pending_scaler_state: dict | None = None

    def _setup(self, model: nn.Module) -> None:
        if self.cast_dtype is not None:
            return
        param = next(model.parameters())
        self.device_type = param.device.type
        self.cast_dtype = (resolve_precision(amp_precision(param.device), param.device).dtype
                           if self.dtype_name is None else getattr(torch, self.dtype_name))
        if self.cast_dtype == torch.float16:
            if self.device_type != 'cuda':
                raise ValueError('fp16 mixed precision needs a CUDA device; use dtype bfloat16 on CPU')
            self.loss_scaler = torch.amp.GradScaler('cuda')
            if self._pending_scaler_state:
                self.loss_scaler.load_state_dict(self._pending_scaler_state)

    @contextmanager
    def optim_context(self, model: nn.Module):
        self._setup(model)
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.cast_dtype):
            yield

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is not None and bool(torch.isfinite(loss.detach())):
            loss = self.loss_scaler.scale(loss)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            return super().step(**kwargs)
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.loss_scaler is not None:
            state['loss_scaler'] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop('loss_scaler', None)
        if scaler_state is not None:
            if self.loss_scaler is not None:
                self.loss_scaler.load_state_dict(scaler_state)
            else:
                self._pending_scaler_state = scaler_state
        super().load_state_dict(state_dict)
