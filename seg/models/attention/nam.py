"""NAM: Normalization-based Attention Module (Liu et al., NeurIPS 2021 workshop),
https://arxiv.org/abs/2111.12419

The BN scale factors measure how much each channel varies, hence how important it is:

- channel: ``Mc = sigmoid(w_gamma * BN(x))`` with ``w_gamma = |gamma| / sum |gamma|`` (gamma the
  BN weights), ``x1 = x * Mc``;
- spatial (optional): the same with "pixel normalisation", a BN whose "channels" are the H * W
  pixel positions (statistics over batch and channels) and whose scale factors lambda give
  ``w_lambda = |lambda| / sum |lambda|``; ``y = x1 * sigmoid(w_lambda * BN_s(x1))``. The pixel
  positions carry learned weights, so this variant is bound to one input size.

The paper also adds an L1 penalty on the scale factors to the loss; :meth:`NAM.sparsity_penalty`
returns it. Unlike the reference code, the weights are not detached: gradients reach gamma and
lambda through ``w_gamma`` and ``w_lambda`` as well as through BN.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from seg.registry import ATTENTION

from .base import AttentionModule, check_input, check_int


def _scale_weights(bn: nn.BatchNorm2d) -> Tensor:
    """``|gamma| / sum |gamma|`` of a BN layer, shape (N,)."""
    g = bn.weight.abs()
    return g / g.sum().clamp_min(1e-12)


@ATTENTION.register_module(name='nam')
class NAM(AttentionModule):
    """Normalization-based attention.

    Args:
        channels: input (and output) channels C.
        spatial: add the pixel-normalisation spatial branch after the channel one.
        spatial_size: (H, W) of the inputs; required with ``spatial`` (one scale factor per pixel).

    Parameters: ``2 C`` (the BN's affine pair), ``+ 2 H W`` with ``spatial``. The weights are the
    outputs of the submodules ``channel_gate`` (B, C, H, W) and ``spatial_gate`` (B, C, H, W).
    """

    attention_maps = {'channel_gate': 'channel', 'spatial_gate': 'spatial'}

    @classmethod
    def param_count(cls, channels: int, spatial: bool = False, spatial_size: Sequence[int] | None = None) -> int:
        return 2 * channels + (2 * spatial_size[0] * spatial_size[1] if spatial else 0)

    def __init__(self, channels: int, spatial: bool = False,
                 spatial_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.channels = check_int('NAM', 'channels', channels)
        self.bn = nn.BatchNorm2d(channels)
        self.channel_gate = nn.Sigmoid()
        self.spatial_size: tuple[int, int] | None = None
        if spatial:
            if (spatial_size is None or isinstance(spatial_size, (str, bytes))
                    or not isinstance(spatial_size, Sequence) or len(spatial_size) != 2):
                raise ValueError(f'NAM: spatial=True needs spatial_size=(H, W), the input size its '
                                 f'per-pixel scale factors are learned for; got {spatial_size!r}')
            h = check_int('NAM', 'spatial_size[0]', spatial_size[0])
            w = check_int('NAM', 'spatial_size[1]', spatial_size[1])
            self.spatial_size = (h, w)
            self.bn_spatial = nn.BatchNorm2d(h * w)
            self.spatial_gate = nn.Sigmoid()

    def sparsity_penalty(self) -> Tensor:
        """The L1 norm of the BN scale factors (gamma, and lambda with the spatial branch).

        Add it to the loss with a small weight to prune unimportant channels/pixels (paper Eq. 4).
        """
        penalty = self.bn.weight.abs().sum()
        if self.spatial_size is not None:
            penalty = penalty + self.bn_spatial.weight.abs().sum()
        return penalty

    def forward(self, x: Tensor) -> Tensor:
        """Gate ``x`` (B, C, H, W) by its BN-weighted normalised values."""
        check_input('NAM', x, self.channels)
        b, c, h, w = x.shape
        wc = _scale_weights(self.bn).view(1, c, 1, 1)  # [1, C, 1, 1]
        x = x * self.channel_gate(self.bn(x) * wc)  # [B, C, H, W]
        if self.spatial_size is None:
            return x
        if (h, w) != self.spatial_size:
            raise ValueError(f'NAM: the spatial branch was built for inputs of size {self.spatial_size}, '
                             f'got {(h, w)}')
        pixels = x.flatten(2).transpose(1, 2).reshape(b, h * w, c, 1)  # [B, H*W, C, 1]: pixels as BN channels
        ws = _scale_weights(self.bn_spatial).view(1, h * w, 1, 1)  # [1, H*W, 1, 1]
        logits = (self.bn_spatial(pixels) * ws).reshape(b, h * w, c).transpose(1, 2)  # [B, C, H*W]
        return x * self.spatial_gate(logits.reshape(b, c, h, w))  # [B, C, H, W]
