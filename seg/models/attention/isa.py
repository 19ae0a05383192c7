"""Interlaced Sparse Self-Attention for Semantic Segmentation (Huang et al., 2019),
https://arxiv.org/abs/1907.12273

Self-attention over all N pixels factorised into two sparse steps on a grid of ``Gh x Gw``
blocks of ``Lh x Lw`` pixels (``down_factor = (Lh, Lw)``, 8 x 8 in the paper):

1. long-range (global) relation: within each of the ``Lh Lw`` interlaced groups, the pixels at
   the same offset inside their block (``Gh Gw`` pixels spread over the whole map);
2. short-range (local) relation: within each block (``Lh Lw`` neighbouring pixels), on the
   output of step 1.

After both, every pixel has drawn from every other. A map whose sides are not multiples of the
block is zero-padded to ``(Gh Lh, Gw Lw)``, ``Gh = ceil(H / Lh)`` (half the padding before, the
rest after, as mmsegmentation; the padded pixels take part in both relations as keys and values)
and cropped back after step 2.

Each relation is a self-attention block: query and key are two 1x1 conv + norm + ReLU to
``isa_channels``, the value a 1x1 convolution (with bias) keeping C, the logits scaled by
``1 / sqrt(isa_channels)``, and the attended values go through a 1x1 conv + norm + ReLU. The
attention inside the groups runs through :func:`seg.ops.position_attention`, batched over the
groups.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.layers import ConvBNReLU
from seg.models.norm import NORMS
from seg.ops import position_attention, position_attention_row
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int

__all__ = ['ISA', 'RelationBlock']


class RelationBlock(nn.Module):
    """One relation of ISA: ``out(sum_j softmax_j(q_i . k_j / sqrt(Ci)) v_j)`` within each group.

    Args:
        channels: C.
        inner: Ci, the query / key width.
        norm: the norm of the query, key and output convolutions.

    Its input is the groups as a batch, (B G, C, h, w); the attention is within each.
    """

    def __init__(self, channels: int, inner: int, norm: str = 'BN') -> None:
        super().__init__()
        self.inner = inner
        self.query = nn.Sequential(ConvBNReLU(channels, inner, 1, norm=norm), ConvBNReLU(inner, inner, 1, norm=norm))
        self.key = nn.Sequential(ConvBNReLU(channels, inner, 1, norm=norm), ConvBNReLU(inner, inner, 1, norm=norm))
        self.value = nn.Conv2d(channels, channels, 1)
        self.out = ConvBNReLU(channels, channels, 1, norm=norm)

    @property
    def scale(self) -> float:
        return self.inner ** -0.5

    def forward(self, x: Tensor) -> Tensor:
        return self.out(position_attention(self.query(x), self.key(x), self.value(x), scale=self.scale))


def _check_down_factor(down_factor) -> tuple[int, int]:
    if (isinstance(down_factor, (str, bytes)) or not isinstance(down_factor, Sequence) or len(down_factor) != 2
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in down_factor)):
        raise ValueError(f'ISA: down_factor must be a pair (Lh, Lw) of integers >= 1, got {down_factor!r}')
    return int(down_factor[0]), int(down_factor[1])


@ATTENTION.register_module(name='isa')
class ISA(AttentionModule):
    """Interlaced sparse self-attention: the global relation over interlaced groups, then the local
    relation within blocks.

    Args:
        channels: input (and output) channels C.
        isa_channels: the query / key width Ci; ``None`` means ``max(1, C // 2)`` (256 at C = 512,
            as the published models).
        down_factor: the block ``(Lh, Lw)``: the local groups' size; the global groups have
            ``ceil(H / Lh) x ceil(W / Lw)`` pixels.
        norm: the norm of the projections: ``'BN'``, ``'SyncBN'``, ``'GN'`` or ``'none'``.

    Not residual: the output is the second relation's, after a ReLU (ISANet's head concatenates
    it with the input). A point's attention rows are recomputed from the module's input.
    """

    attention_maps = {'': 'input'}
    residual = False

    def __init__(self, channels: int, isa_channels: int | None = None, down_factor: Sequence[int] = (8, 8),
                 norm: str = 'BN') -> None:
        super().__init__()
        self.channels = check_int('ISA', 'channels', channels)
        inner = max(1, channels // 2) if isa_channels is None else check_int('ISA', 'isa_channels', isa_channels)
        self.down_factor = _check_down_factor(down_factor)
        if norm not in NORMS:
            raise ValueError(f"ISA: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.isa_channels = inner
        self.global_relation = RelationBlock(channels, inner, norm)
        self.local_relation = RelationBlock(channels, inner, norm)

    def extra_repr(self) -> str:
        return f'isa_channels={self.isa_channels}, down_factor={self.down_factor}'

    def _padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding to whole blocks."""
        lh, lw = self.down_factor
        pad_h, pad_w = math.ceil(h / lh) * lh - h, math.ceil(w / lw) * lw - w
        return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2

    def _global_groups(self, x: Tensor) -> Tensor:
        """(B, C, Gh Lh, Gw Lw) -> (B Lh Lw, C, Gh, Gw): one group per offset inside the blocks."""
        b, c, hp, wp = x.shape
        lh, lw = self.down_factor
        x = x.reshape(b, c, hp // lh, lh, wp // lw, lw).permute(0, 3, 5, 1, 2, 4)  # [B, Lh, Lw, C, Gh, Gw]
        return x.reshape(b * lh * lw, c, hp // lh, wp // lw)

    def _local_groups(self, y: Tensor, b: int) -> Tensor:
        """The global groups (B Lh Lw, C, Gh, Gw) -> the blocks (B Gh Gw, C, Lh, Lw)."""
        _, c, gh, gw = y.shape
        lh, lw = self.down_factor
        y = y.reshape(b, lh, lw, c, gh, gw).permute(0, 4, 5, 3, 1, 2)  # [B, Gh, Gw, C, Lh, Lw]
        return y.reshape(b * gh * gw, c, lh, lw)

    def _blocks_to_map(self, z: Tensor, b: int, gh: int, gw: int) -> Tensor:
        """The blocks (B Gh Gw, C, Lh, Lw) -> the map (B, C, Gh Lh, Gw Lw), always a new tensor.

        Never a view of the blocks (which a plain reshape is for some sizes, e.g. a single block): they
        are the last ReLU's output, which its backward needs, and a caller may add onto the module's
        output in place (timm's residual blocks add the shortcut so).
        """
        c = z.shape[1]
        lh, lw = self.down_factor
        z = z.reshape(b, gh, gw, c, lh, lw).permute(0, 3, 1, 4, 2, 5)  # [B, C, Gh, Lh, Gw, Lw]
        return z.clone(memory_format=torch.contiguous_format).view(b, c, gh * lh, gw * lw)

    def forward(self, x: Tensor) -> Tensor:
        """Global then local relation over ``x`` (B, C, H, W)."""
        check_input('ISA', x, self.channels)
        b, _, h, w = x.shape
        left, right, top, bottom = self._padding(h, w)
        if left or right or top or bottom:
            x = F.pad(x, (left, right, top, bottom))
        y = self.global_relation(self._global_groups(x))  # [B Lh Lw, C, Gh, Gw]
        gh, gw = y.shape[-2:]
        z = self.local_relation(self._local_groups(y, b))  # [B Gh Gw, C, Lh, Lw]
        return self._blocks_to_map(z, b, gh, gw)[:, :, top:top + h, left:left + w]

    def maps(self, records, locate=None):
        """For the point p: ``global`` (its weights over its interlaced group in step 1), ``local``
        (over its block in step 2) and ``effective`` (the two composed, ``sum_q local(p, q) global(q, r)``
        over the q of p's block: where p draws from through both attention steps, ignoring the value
        and output projections between them). Maps of the unpadded map: weights on padded pixels
        are left out, so a row near a padded border sums to less than 1."""
        inputs = records.get('') or []
        if locate is None or not inputs:
            return {}
        x = inputs[-1][:1].to(self.global_relation.value.weight)
        h, w = x.shape[-2:]
        i, j = locate(h, w)
        lh, lw = self.down_factor
        left, right, top, bottom = self._padding(h, w)
        x = F.pad(x, (left, right, top, bottom))
        hp, wp = x.shape[-2:]
        gh, gw = hp // lh, wp // lw
        pi, pj = i + top, j + left  # the point in the padded map
        rel = self.global_relation
        with torch.no_grad():
            groups = self._global_groups(x)  # [Lh Lw, C, Gh, Gw]
            # every group's row at p's block (a, b): the global weights of each pixel of p's block
            rows = position_attention_row(rel.query(groups), rel.key(groups), pi // lh, pj // lw, rel.scale)
            rows = rows.reshape(lh, lw, gh, gw)  # [offset u, offset v, Gh, Gw]
            blocks = self._local_groups(rel(groups), 1)  # [Gh Gw, C, Lh, Lw]
            loc = self.local_relation
            block = blocks[(pi // lh) * gw + pj // lw][None]  # [1, C, Lh, Lw]
            local = position_attention_row(loc.query(block), loc.key(block), pi % lh, pj % lw, loc.scale)[0]
        # pixel (a Lh + u, b Lw + v) has offset (u, v) and block (a, b)
        global_map = rows.new_zeros(lh, lw, gh, gw)
        global_map[pi % lh, pj % lw] = rows[pi % lh, pj % lw]
        local_map = rows.new_zeros(gh, gw, lh, lw)
        local_map[pi // lh, pj // lw] = local
        effective = local[:, :, None, None] * rows  # [Lh, Lw, Gh, Gw]

        def frame(m: Tensor, offset_first: bool) -> Tensor:  # -> the unpadded (H, W) map
            m = m.permute(2, 0, 3, 1) if offset_first else m.permute(0, 2, 1, 3)  # [Gh, Lh, Gw, Lw]
            return m.reshape(hp, wp)[top:top + h, left:left + w]

        return {'global': AttentionMap('point', frame(global_map, True), 'global (interlaced) relation weights'),
                'local': AttentionMap('point', frame(local_map, False), 'local (block) relation weights'),
                'effective': AttentionMap('point', frame(effective, True),
                                          'global then local weights composed', power=0.5)}
