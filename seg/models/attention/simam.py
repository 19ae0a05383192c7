"""SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks (Yang et al.,
ICML 2021), https://proceedings.mlr.press/v139/yang21o.html

Each neuron t of a channel gets the inverse of its minimal energy,
``1 / e_t = (t - mu)^2 / (4 (var + lambda)) + 1 / 2``, with mu and var the mean and the variance
(normalised by n = H * W - 1) of its channel; the output is ``x * sigmoid(1 / e)``.
No parameters.

A 1x1 map has no other neurons: its variance is taken as 0 (n clamped to 1), so ``1 / e = 1/2``
and every value is scaled by ``sigmoid(1/2)``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int, check_positive


@ATTENTION.register_module(name='simam')
class SimAM(AttentionModule):
    """Parameter-free, energy-based 3-D attention.

    Args:
        channels: input channels C, only to check the inputs (``None``: any).
        e_lambda: the regulariser lambda of the energy.

    The energy is computed in float32 for half-precision inputs. The weights ``sigmoid(1 / e)``
    (B, C, H, W) are the output of the submodule ``gate``.
    """

    attention_maps = {'gate': 'spatial'}

    @classmethod
    def param_count(cls, channels: int | None = None, e_lambda: float = 1e-4) -> int:
        return 0

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.channels = None if channels is None else check_int('SimAM', 'channels', channels)
        self.e_lambda = check_positive('SimAM', 'e_lambda', e_lambda)
        self.gate = nn.Sigmoid()

    def extra_repr(self) -> str:
        return f'channels={self.channels}, e_lambda={self.e_lambda}'

    def forward(self, x: Tensor) -> Tensor:
        """Weight every value of ``x`` (B, C, H, W) by its inverse minimal energy."""
        check_input('SimAM', x, x.shape[1] if self.channels is None else self.channels)
        h, w = x.shape[2:]
        n = max(h * w - 1, 1)
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        d = (xf - xf.mean(dim=(2, 3), keepdim=True)).square()  # [B, C, H, W]
        var = d.sum(dim=(2, 3), keepdim=True) / n  # [B, C, 1, 1]
        inv_energy = d / (4 * (var + self.e_lambda)) + 0.5  # [B, C, H, W]
        return x * self.gate(inv_energy).to(x.dtype)
