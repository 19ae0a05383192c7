"""The context blocks of ``seg.models.blocks`` as plug-ins of the attention zoo.

Non-local Neural Networks (Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971 -- ``'nonlocal'``;
CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721 -- ``'criss_cross'`` (recurrent, R passes sharing weights);
Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019), https://arxiv.org/abs/1809.02983
-- ``'pam'``, ``'cam'`` and ``'dual'`` (PAM + CAM summed, DANet's block as one module).

Each class here is a thin subclass of the block it exposes: it checks the options and the input
the way the rest of the zoo does (a ``ValueError`` naming the module, the option and the
constraint) and then runs the block's own forward, so the computation is the one of
``seg.models.blocks`` over the fast ops of ``seg.ops``.

Unlike the gates of the other modules, these attention maps are never materialised as a module
output (PAM's and non-local's are N x N for N = H * W pixels, which the fast paths avoid): they
are recomputed from the hookable tensors they are made of -- the ``query`` / ``key`` convs
(criss-cross: ``cca.query`` / ``cca.key``, dual: ``pam.query`` / ``pam.key``), the non-local
``theta`` / ``phi`` convs (or its input in the ``gaussian`` mode) and CAM's input -- as
``seg.visualization.attention`` does.
"""
from __future__ import annotations

from torch import Tensor

from seg.models.blocks import (
    ChannelAttention,
    DualAttention,
    NonLocal2d,
    PositionAttention,
    RecurrentCrissCross,
)
from seg.models.blocks.non_local import MODES
from seg.models.norm import NORMS
from seg.registry import ATTENTION

from .factory import check_input, check_int

__all__ = ['CAM', 'PAM', 'CrissCross', 'DualBlock', 'NonLocal']


def _check_reduction(owner: str, channels: int, reduction: int) -> int:
    """Check ``reduction`` is an integer in [1, channels] (so ``channels // reduction >= 1``)."""
    reduction = check_int(owner, 'reduction', reduction)
    if reduction > channels:
        raise ValueError(f'{owner}: reduction must be <= channels so that channels // reduction >= 1, '
                         f'got reduction={reduction} for channels={channels}')
    return reduction


@ATTENTION.register_module(name='nonlocal')
class NonLocal(NonLocal2d):
    """Non-local block ``z = x + norm(W_z y)``, ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)``.

    Args:
        channels: input (and output) channels C.
        reduction: the embedding width is ``C // reduction`` (2 in the paper).
        mode: the pairwise function: ``'embedded_gaussian'`` (default), ``'gaussian'``,
            ``'dot_product'`` or ``'concatenation'``.
        use_scale: scale the embedded-Gaussian logits by ``1 / sqrt(C // reduction)``.
        norm: the norm after ``W_z``: ``'BN'``, ``'SyncBN'``, ``'GN'`` or ``'none'``; it starts at
            zero (its scale, or ``W_z`` itself with ``'none'``), so the block starts as the identity.
        query_chunk: queries per chunk of the ``'concatenation'`` mode (bounds its memory).

    Parameters (Ci = C // r): ``3 (C Ci + Ci) + C Ci + 2 C`` with a norm (``W_z`` bias-free), plus
    ``2 Ci`` for ``'concatenation'``; ``'gaussian'`` has no theta / phi.
    """

    def __init__(self, channels: int, reduction: int = 2, mode: str = 'embedded_gaussian',
                 use_scale: bool = True, norm: str = 'BN', query_chunk: int = 1024) -> None:
        channels = check_int('NonLocal', 'channels', channels)
        reduction = _check_reduction('NonLocal', channels, reduction)
        if mode not in MODES:
            raise ValueError(f"NonLocal: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(use_scale, bool):
            raise ValueError(f'NonLocal: use_scale must be a bool, got {use_scale!r}')
        if norm not in NORMS:
            raise ValueError(f"NonLocal: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        query_chunk = check_int('NonLocal', 'query_chunk', query_chunk)
        super().__init__(channels, reduction, mode=mode, use_scale=use_scale, norm=norm,
                         query_chunk=query_chunk)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        """Add the non-local response to ``x`` (B, C, H, W)."""
        check_input('NonLocal', x, self.channels)
        return super().forward(x)


@ATTENTION.register_module(name='criss_cross')
class CrissCross(RecurrentCrissCross):
    """Recurrent criss-cross attention: R passes of ``gamma * cc_attention(x) + x`` sharing weights.

    Args:
        channels: input (and output) channels C.
        recurrence: number of passes R (2 in the paper: then every pixel reaches every other).
        reduction: query / key width is ``C // reduction``.

    Parameters (independent of R): ``2 (C C/r + C/r) + C C + C + 1`` (query, key, value 1x1 convs
    with bias, gamma).
    """

    def __init__(self, channels: int, recurrence: int = 2, reduction: int = 8) -> None:
        channels = check_int('CrissCross', 'channels', channels)
        recurrence = check_int('CrissCross', 'recurrence', recurrence)
        reduction = _check_reduction('CrissCross', channels, reduction)
        super().__init__(channels, recurrence=recurrence, reduction=reduction)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        """Run the R criss-cross passes over ``x`` (B, C, H, W)."""
        check_input('CrissCross', x, self.channels)
        return super().forward(x)


@ATTENTION.register_module(name='pam')
class PAM(PositionAttention):
    """DANet's position attention ``gamma * sum_j softmax_j(q_i . k_j) v_j + x`` over all pixels.

    Args:
        channels: input (and output) channels C.
        reduction: query / key width is ``C // reduction`` (8 in the paper).

    Parameters: ``2 (C C/r + C/r) + C C + C + 1`` (query, key, value 1x1 convs with bias, gamma).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        channels = check_int('PAM', 'channels', channels)
        reduction = _check_reduction('PAM', channels, reduction)
        super().__init__(channels, reduction)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        """Add the position-attention context to ``x`` (B, C, H, W)."""
        check_input('PAM', x, self.channels)
        return super().forward(x)


@ATTENTION.register_module(name='cam')
class CAM(ChannelAttention):
    """DANet's channel attention ``gamma * softmax(max(E) - E) X + x``, ``E = X X^T`` over the pixels.

    Args:
        channels: input (and output) channels C.

    Parameters: 1 (gamma).
    """

    def __init__(self, channels: int) -> None:
        channels = check_int('CAM', 'channels', channels)
        super().__init__(channels)

    def forward(self, x: Tensor) -> Tensor:
        """Add the channel-attention context to ``x`` (B, C, H, W)."""
        check_input('CAM', x, self.channels)
        return super().forward(x)


@ATTENTION.register_module(name='dual')
class DualBlock(DualAttention):
    """DANet's dual attention as one module: ``PAM(x) + CAM(x)`` (submodules ``pam``, ``cam``).

    Both branches keep their residual, so the output is ``2 x`` plus the two contexts at the start
    (both gammas are 0), as when DANet's head sums the two branches.

    Args:
        channels: input (and output) channels C.
        reduction: PAM's query / key width is ``C // reduction``.

    Parameters: ``2 (C C/r + C/r) + C C + C + 2`` (PAM's, and CAM's gamma).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        channels = check_int('DualBlock', 'channels', channels)
        reduction = _check_reduction('DualBlock', channels, reduction)
        super().__init__(channels, reduction)
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        """Sum the position- and channel-attention branches over ``x`` (B, C, H, W)."""
        check_input('DualBlock', x, self.channels)
        return super().forward(x)
