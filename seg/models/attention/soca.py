"""Second-order Attention Network for Single Image Super-Resolution (Dai et al., CVPR 2019),
https://openaccess.thecvf.com/content_CVPR_2019/html/Dai_Second-Order_Attention_Network_for_Single_Image_Super-Resolution_CVPR_2019_paper.html

Second-order channel attention (SOCA): the channel covariance of the feature map,
``Sigma = X I_hat X^T`` with X the (C, M = H W) features and ``I_hat = (I - 1 1^T / M) / M``
(i.e. the covariance of the centred features), is normalised by its matrix square root
computed with Newton-Schulz iterations: pre-normalisation ``A = Sigma / tr(Sigma)``, then
``Y_0 = A, Z_0 = I, T_k = (3 I - Z_{k-1} Y_{k-1}) / 2, Y_k = Y_{k-1} T_k, Z_k = T_k Z_{k-1}``
and post-compensation ``Sigma^(1/2) ~ sqrt(tr(Sigma)) Y_N``. The mean of each row is the
channel's statistic z (B, C); ``sigmoid(W_U relu(W_D z))`` (1x1 convolutions with bias,
``C -> C // r -> C``) gates the input.

The backward pass is plain autograd through the iterations. The covariance and the
iterations always run in float32 or float64 (autocast is switched off there), since a half-precision
square root is useless; ``eps`` keeps the normalisation finite for a constant map (or a 1x1
map, whose covariance is 0: the statistic is then 0 and the gate does not depend on the input).
The centred formulation avoids the reference code's M x M matrix, so no cropping is needed.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int, check_positive, check_reduction


def covariance_pool(x: Tensor) -> Tensor:
    """Channel covariance of a feature map, normalised by the number of pixels M.

    Args:
        x: (B, C, H, W).

    Returns:
        (B, C, C): ``Xc Xc^T / M`` with Xc the features centred over the M = H W pixels.
    """
    b, c, h, w = x.shape
    xc = x.reshape(b, c, h * w)  # [B, C, M]
    xc = xc - xc.mean(dim=2, keepdim=True)  # [B, C, M]
    return torch.bmm(xc, xc.transpose(1, 2)) / (h * w)  # [B, C, C]


def newton_schulz_sqrt(sigma: Tensor, iterations: int = 5, eps: float = 1e-5) -> Tensor:
    """Approximate square root of symmetric positive semi-definite matrices.

    Args:
        sigma: (B, C, C) symmetric PSD matrices.
        iterations: number N of Newton-Schulz iterations (the last one updates Y only).
        eps: added to the trace in the pre-normalisation and the post-compensation.

    Returns:
        (B, C, C): ``sqrt(tr(sigma) + eps) * Y_N``.
    """
    c = sigma.shape[-1]
    trace = sigma.diagonal(dim1=1, dim2=2).sum(dim=1).view(-1, 1, 1) + eps  # [B, 1, 1]
    a = sigma / trace  # [B, C, C]
    eye = torch.eye(c, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)  # [B, C, C]
    y, z = a, eye
    for k in range(iterations):
        t = 0.5 * (3.0 * eye - torch.bmm(z, y))  # [B, C, C]
        y = torch.bmm(y, t)  # [B, C, C]
        if k < iterations - 1:
            z = torch.bmm(t, z)  # [B, C, C]
    return y * trace.sqrt()


@ATTENTION.register_module(name='soca')
class SOCA(AttentionModule):
    """Second-order channel attention.

    Args:
        channels: input (and output) channels C.
        reduction: ratio r of the gate's bottleneck ``C // r`` (>= 1).
        iterations: Newton-Schulz iterations N for the matrix square root.
        eps: trace regulariser of the square root.

    Parameters: ``2 C (C // r) + C // r + C`` (two 1x1 convolutions with bias). The channel
    weights (B, C, 1, 1) are the output of the submodule ``gate``.
    """

    attention_maps = {'gate': 'channel'}

    @classmethod
    def param_count(cls, channels: int, reduction: int = 8, iterations: int = 5, eps: float = 1e-5) -> int:
        hidden = channels // reduction
        return 2 * channels * hidden + hidden + channels

    def __init__(self, channels: int, reduction: int = 8, iterations: int = 5, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = check_int('SOCA', 'channels', channels)
        check_reduction('SOCA', channels, reduction)
        self.iterations = check_int('SOCA', 'iterations', iterations)
        self.eps = check_positive('SOCA', 'eps', eps)
        hidden = channels // reduction
        self.conv_down = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.conv_up = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Gate the channels of ``x`` (B, C, H, W) by their second-order statistics."""
        check_input('SOCA', x, self.channels)
        b, c = x.shape[:2]
        with torch.autocast(device_type=x.device.type, enabled=False):
            sigma = covariance_pool(x if x.dtype == torch.float64 else x.float())  # [B, C, C]
            root = newton_schulz_sqrt(sigma, self.iterations, self.eps)  # [B, C, C]
            z = root.mean(dim=2).view(b, c, 1, 1)  # [B, C, 1, 1]: mean of each row
        w = self.gate(self.conv_up(self.act(self.conv_down(z.to(self.conv_down.weight.dtype)))))
        return x * w  # [B, C, 1, 1] broadcast over [B, C, H, W]
