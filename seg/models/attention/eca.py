"""ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks (Wang et al.,
CVPR 2020), https://arxiv.org/abs/1910.03151

Global average pooling gives one value per channel; a bias-free 1-D convolution of size k
across the channel axis (local cross-channel interaction, no dimensionality reduction) and a
sigmoid give the channel weights. The adaptive kernel size is
``k = |log2(C) / gamma + b / gamma|_odd`` (the odd number nearest, ties going up, which is what
``t = int(...); k = t if t % 2 else t + 1`` computes).
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int, check_positive


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """The adaptive ECA kernel size for ``channels`` channels.

    Args:
        channels: channel count C (>= 1).
        gamma: the slope gamma of the paper's mapping.
        b: the offset b of the paper's mapping.

    Returns:
        The odd integer nearest ``|log2(C) / gamma + b / gamma|`` (ties resolved upwards), >= 1.
    """
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 == 1 else t + 1


@ATTENTION.register_module(name='eca')
class ECA(AttentionModule):
    """Efficient channel attention.

    Args:
        channels: input (and output) channels C.
        kernel_size: odd size k of the 1-D convolution across channels; ``None`` chooses it
            from C with :func:`eca_kernel_size` (the paper's adaptive rule).
        gamma: gamma of the adaptive rule (ignored when ``kernel_size`` is given).
        b: b of the adaptive rule (ignored when ``kernel_size`` is given).

    Parameters: ``k``. The channel weights are the output of the submodule ``gate``.
    """

    attention_maps = {'gate': 'channel'}

    @classmethod
    def param_count(cls, channels: int, kernel_size: int | None = None, gamma: float = 2.0, b: float = 1.0) -> int:
        return kernel_size if kernel_size is not None else eca_kernel_size(channels, gamma, b)

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: float = 2.0,
                 b: float = 1.0) -> None:
        super().__init__()
        self.channels = check_int('ECA', 'channels', channels)
        if kernel_size is None:
            check_positive('ECA', 'gamma', gamma)
            if isinstance(b, bool) or not isinstance(b, (int, float)):
                raise ValueError(f'ECA: b must be a number, got {b!r}')
            kernel_size = eca_kernel_size(channels, gamma, b)
        check_int('ECA', 'kernel_size', kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f'ECA: kernel_size must be odd (the convolution keeps the channel count '
                             f'with padding k // 2), got {kernel_size}')
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Rescale the channels of ``x`` (B, C, H, W) by their ECA weights."""
        check_input('ECA', x, self.channels)
        b, c = x.shape[:2]
        s = x.mean(dim=(2, 3)).view(b, 1, c)  # [B, 1, C]: channels as a 1-D signal
        w = self.gate(self.conv(s))  # [B, 1, C]
        return x * w.view(b, c, 1, 1)  # [B, C, 1, 1] broadcast over [B, C, H, W]
