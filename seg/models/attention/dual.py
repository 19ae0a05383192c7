"""Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019), https://arxiv.org/abs/1809.02983
-- DANet's two attention branches as one plug-in.

``x + gamma_p * PAM-context(x) + gamma_c * CAM-context(x)``: position and channel attention on
the same feature, fused by sum, sharing one identity. Both gammas start at 0, so the block
starts as the identity.
"""
from __future__ import annotations

from torch import Tensor

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int, check_reduction
from .cam import CAM
from .pam import PAM

__all__ = ['DualBlock']


@ATTENTION.register_module(name='dual')
class DualBlock(AttentionModule):
    """PAM and CAM side by side on one feature, summed (submodules ``pam``, ``cam``).

    Args:
        channels: input (and output) channels C.
        reduction: PAM's query / key width is ``C // reduction``.

    Parameters: ``2 (C C/r + C/r) + C C + C + 2`` (PAM's, and CAM's gamma). The maps are those of
    the ``pam`` and ``cam`` submodules.
    """

    residual = True

    @classmethod
    def param_count(cls, channels: int, reduction: int = 8) -> int:
        return PAM.param_count(channels, reduction) + CAM.param_count(channels)

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.channels = check_int('DualBlock', 'channels', channels)
        self.pam = PAM(channels, check_reduction('DualBlock', channels, reduction))
        self.cam = CAM(channels)

    def forward(self, x: Tensor) -> Tensor:
        """Sum the position- and channel-attention branches over ``x`` (B, C, H, W)."""
        check_input('DualBlock', x, self.channels)
        return self.pam(x) + self.cam(x) - x  # each branch returns its context plus x: keep x once
