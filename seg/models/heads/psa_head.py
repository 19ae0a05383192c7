"""PSANet's head: point-wise spatial attention, collect and distribute.

PSANet: Point-wise Spatial Attention Network for Scene Parsing (Zhao et al., ECCV 2018),
https://hszhao.github.io/papers/eccv18_psanet.pdf -- in mmsegmentation's form (its ``PSAHead``).

Every pixel predicts, with a 1x1 conv, a mask of mh x mw logits centred on itself
(:mod:`seg.ops.psa_mask`). In the *collect* branch pixel t gathers the feature of every position s
weighted by its own mask; in the *distribute* branch pixel s hands its feature to every position t
with its own mask, and each t takes the mix it receives. Both are softmaxed over the sources of each
target (positions no mask reaches count with logit 0) and scaled by ``1 / normalization_factor``;
``'bi-direction'`` concatenates the two branches, each with its own reduction and mask convs.

The attention runs on the feature shrunk by ``shrink_factor`` (bilinear): when neither side divides
by it, to ``(side - 1) // f + 1`` with ``align_corners=True``, else to ``side // f`` with
``align_corners=False``; the projected result is resized back with that same ``align_corners``
(the head's own ``align_corners`` only when the factor is 1). The projection is a 1x1 conv with
padding 1 (as mmsegmentation's), so the shrunk map grows by one pixel on every side before the resize.

Memory: mmsegmentation materialises, per branch, the (N, N) mask layout and its softmax for the N
pixels of the shrunk feature: at 1024 x 2048 inference (feature 128 x 256, shrunk 64 x 128) N = 8192,
256 MiB each, 1 GiB for the two branches. Here :func:`seg.ops.psa_attention` never holds it: per
branch it holds the mask (B, mh * mw, h, w) that the attention conv outputs (294 MiB at that size with
97 x 97 masks, as in mmsegmentation), a (B, N) log-sum-exp, and while it runs a few (B, chunk, N)
blocks of 64 MiB. Only ``compact=True`` (whose conv outputs the N x N map itself) takes the plain path.

Export (ONNX): the graph takes the plain path (the buffer, a softmax, a matmul) and, since the size
rule depends on the parity of the feature, keeps both rules behind an ``If`` on it (``torch.cond``),
so that it is right at every input size, not only at the parity of the example.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.attention.base import AttentionMap, AttentionModule, check_int, check_positive
from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.models.norm import build_norm
from seg.ops import psa_attention, psa_attention_weights
from seg.registry import MODELS

__all__ = ['PSA', 'PSAHead', 'psa_shrunk_size']

PSA_MODES = ('collect', 'distribute', 'bi-direction')


def psa_shrunk_size(h: int, w: int, shrink_factor: int, align_corners: bool,
                    odd: bool | None = None) -> tuple[int, int, bool]:
    """The (h, w) the attention runs at and the ``align_corners`` of both resizes (mmsegmentation's rule).

    A factor of 1 keeps the size (no resize; the head's ``align_corners`` for the final one). Otherwise
    ``(side - 1) // f + 1`` with ``align_corners=True`` when neither side divides by f (``odd``; decided
    from the sizes unless given), else ``side // f`` with ``align_corners=False``, at least 1
    (mmsegmentation fails on a 0-pixel side).
    """
    if shrink_factor == 1:
        return h, w, align_corners
    if odd is None:
        odd = bool(h % shrink_factor and w % shrink_factor)
    if odd:
        return (h - 1) // shrink_factor + 1, (w - 1) // shrink_factor + 1, True
    return torch.sym_max(1, h // shrink_factor), torch.sym_max(1, w // shrink_factor), False


class PSA(AttentionModule):
    """The attention part of PSANet: reduce -> shrink -> predict masks -> collect / distribute.

    Not a zoo module (not registered in ``ATTENTION``): it maps (B, in_channels, H, W) to
    (B, channels * branches, h, w) at the shrunk size, which :class:`PSAHead` projects and resizes back.
    It declares its mask convolutions so that the visualiser draws, for a point, what it collects and
    where it distributes.

    Args: those of :class:`PSAHead` of the same names.
    """

    attention_maps = {'attention': 'query', 'attention_p': 'query'}

    def __init__(self, in_channels: int, channels: int, mask_size: Any = (97, 97), psa_type: str = 'bi-direction',
                 compact: bool = False, shrink_factor: int = 2, normalization_factor: float | None = 1.0,
                 psa_softmax: bool = True, align_corners: bool = False, norm: str = 'BN') -> None:
        super().__init__()
        owner = 'PSAHead'
        in_channels = check_int(owner, 'in_channels', in_channels)
        self.channels = check_int(owner, 'channels', channels)
        pair = (mask_size, mask_size) if isinstance(mask_size, int) and not isinstance(mask_size, bool) else mask_size
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f'{owner}: mask_size must be a pair (mask_h, mask_w) of integers >= 1, got {mask_size!r}')
        self.mask_size = (check_int(owner, 'mask_size', pair[0]), check_int(owner, 'mask_size', pair[1]))
        if psa_type not in PSA_MODES:
            raise ValueError(f"{owner}: psa_type must be one of {', '.join(PSA_MODES)}, got {psa_type!r}")
        self.psa_type = psa_type
        for name, value in (('compact', compact), ('psa_softmax', psa_softmax), ('align_corners', align_corners)):
            if not isinstance(value, bool):
                raise ValueError(f'{owner}: {name} must be True or False, got {value!r}')
        self.compact, self.psa_softmax, self.align_corners = compact, psa_softmax, align_corners
        self.shrink_factor = check_int(owner, 'shrink_factor', shrink_factor)
        mask_cells = self.mask_size[0] * self.mask_size[1]
        self.normalization_factor = (float(mask_cells) if normalization_factor is None
                                     else check_positive(owner, 'normalization_factor', normalization_factor))
        self.reduce = ConvBNReLU(in_channels, channels, 1, norm=norm)
        self.attention = nn.Sequential(ConvBNReLU(channels, channels, 1, norm=norm),
                                       nn.Conv2d(channels, mask_cells, 1, bias=False))
        if psa_type == 'bi-direction':
            self.reduce_p = ConvBNReLU(in_channels, channels, 1, norm=norm)
            self.attention_p = nn.Sequential(ConvBNReLU(channels, channels, 1, norm=norm),
                                             nn.Conv2d(channels, mask_cells, 1, bias=False))

    @property
    def out_channels(self) -> int:
        return self.channels * (2 if self.psa_type == 'bi-direction' else 1)

    def extra_repr(self) -> str:
        return (f'mask_size={self.mask_size}, psa_type={self.psa_type!r}, compact={self.compact}, '
                f'shrink_factor={self.shrink_factor}, normalization_factor={self.normalization_factor:g}, '
                f'psa_softmax={self.psa_softmax}')

    def _branches(self) -> list[tuple[str, str]]:
        """(mask conv name, layout) of each branch, in the order of the output channels."""
        if self.psa_type == 'bi-direction':
            return [('attention', 'collect'), ('attention_p', 'distribute')]
        return [('attention', self.psa_type)]

    def _compact_map(self, y: Tensor, layout: str) -> Tensor:
        """A compact map (B, N, h, w) as mmsegmentation reads it: ``[s, t]``, transposed where it transposes
        (the distribute branch of 'bi-direction', and 'collect' alone)."""
        b, n, h, w = y.shape
        if n != h * w:
            raise ValueError(f'PSAHead: compact=True needs mask_h * mask_w == h * w of the shrunk feature, '
                             f'got mask_size {self.mask_size} for a {h}x{w} feature')
        transpose = layout == 'distribute' if self.psa_type == 'bi-direction' else self.psa_type == 'collect'
        y = y.reshape(b, n, n)
        return y.transpose(1, 2) if transpose else y

    def forward(self, x: Tensor, odd: bool | None = None) -> Tensor:
        """(B, in_channels, H, W) -> the attended features (B, out_channels, h, w) at the shrunk size
        (``odd``: which size rule, see :func:`psa_shrunk_size`; decided from the sizes by default)."""
        h, w, align_corners = psa_shrunk_size(x.shape[2], x.shape[3], self.shrink_factor, self.align_corners, odd)
        outs = []
        for name, layout in self._branches():
            feat = self.reduce(x) if name == 'attention' else self.reduce_p(x)  # [B, C, H, W]
            if self.shrink_factor != 1:
                feat = F.interpolate(feat, size=(h, w), mode='bilinear', align_corners=align_corners)
            mask = getattr(self, name)(feat)  # [B, mh * mw, h, w]
            if self.compact:
                y = self._compact_map(mask, layout)  # [B, s, t]
                if self.psa_softmax:
                    y = torch.softmax(y, dim=1)
                out = torch.bmm(feat.flatten(2), y.to(feat.dtype)).reshape(feat.shape)
            else:
                out = psa_attention(feat, mask, layout, self.mask_size, softmax=self.psa_softmax)
            outs.append(out * (1.0 / self.normalization_factor))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def maps(self, records, locate=None):
        """Per branch and call, for a point: ``collect`` (how much it takes from every position: its own
        mask, softmax over the map) and ``distribute`` (how much of every position's input comes from
        it: its own mask, each position's weights softmaxed over all sources)."""
        if locate is None:
            return {}
        out: dict[str, AttentionMap] = {}
        for name, layout in self._branches():
            masks = records.get(name) or []
            for n, mask in enumerate(masks, 1):
                b, _, h, w = mask.shape
                i, j = locate(h, w)
                if self.compact:
                    y = self._compact_map(mask, layout)  # [B, s, t]
                    weights = (torch.softmax(y, dim=1) if self.psa_softmax else y).transpose(1, 2)  # [B, t, s]
                else:
                    weights = psa_attention_weights(mask, layout, self.mask_size, self.psa_softmax)  # [B, t, s]
                point = i * w + j
                if layout == 'collect':
                    values, what = weights[0, point], 'collect: how much the point takes from each position'
                else:
                    values, what = weights[0, :, point], 'distribute: the share of each position\'s input the point gives'
                key = layout if len(masks) == 1 else f'{layout}-call{n}'
                out[key] = AttentionMap('point', values.reshape(h, w).float(), what)
        return out


@MODELS.register_module()
class PSAHead(nn.Module):
    """:class:`PSA` (``context``) -> 1x1 conv (padding 1) -> resize back -> concat with the input ->
    conv 3x3 -> classifier.

    Args:
        in_channels: channels of the selected backbone feature.
        channels: width of the head (of each reduction and of the bottleneck).
        num_classes: number of classes of the logits.
        mask_size: (mask_h, mask_w) of each pixel's attention mask ((97, 97) for Cityscapes, (66, 66)
            for ADE20K in mmsegmentation's recipes: about twice the shrunk feature, so that every pixel
            reaches the whole map).
        psa_type: ``'collect'``, ``'distribute'`` or ``'bi-direction'`` (both, concatenated).
        compact: the mask conv predicts the whole (h * w)-channel map directly (then mask_h * mask_w
            must equal the shrunk h * w); mmsegmentation transposes that map for 'collect' alone and
            for the distribute branch of 'bi-direction', and so does this head.
        shrink_factor: the attention runs on the feature shrunk by this factor (see the module docstring).
        normalization_factor: the attended features are divided by it; ``None`` means mask_h * mask_w.
        psa_softmax: softmax the attention over the sources of each target (else the raw mask values).
        align_corners: of the final resize when ``shrink_factor`` is 1 (mmsegmentation's head option).
        in_index: which backbone feature the head reads.
        dropout: dropout probability before the classifier.
        norm: norm of the convolutions ('BN', 'SyncBN', ...).

    Raises:
        ValueError: an unknown ``psa_type``, a ``mask_size`` that is not a pair of integers >= 1, a
            ``shrink_factor`` that is not an integer >= 1, a ``normalization_factor`` not > 0, a
            non-bool flag.
    """

    outputs = ('out',)
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, mask_size: Any = (97, 97),
                 psa_type: str = 'bi-direction', compact: bool = False, shrink_factor: int = 2,
                 normalization_factor: float | None = 1.0, psa_softmax: bool = True, align_corners: bool = False,
                 in_index: int = -1, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        self.in_index = in_index
        self.context = PSA(in_channels, channels, mask_size, psa_type, compact, shrink_factor, normalization_factor,
                           psa_softmax, align_corners, norm)
        # mmsegmentation's projection: a 1x1 conv with padding 1 (+ norm + ReLU).
        self.proj = nn.Sequential(nn.Conv2d(self.context.out_channels, in_channels, 1, padding=1, bias=False),
                                  build_norm(norm, in_channels), nn.ReLU(inplace=True))
        self.bottleneck = ConvBNReLU(in_channels * 2, channels, 3, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def _attend(self, x: Tensor, odd: bool | None = None) -> Tensor:
        """context -> proj -> resized back to x's size: (B, in_channels, H, W)."""
        ctx = self.context
        _, _, align_corners = psa_shrunk_size(x.shape[2], x.shape[3], ctx.shrink_factor, ctx.align_corners, odd)
        out = self.proj(ctx(x, odd))  # [B, in_channels, h + 2, w + 2]
        return F.interpolate(out, size=x.shape[2:], mode='bilinear', align_corners=align_corners)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        x = feats[self.in_index]
        f = self.context.shrink_factor
        if f != 1 and (torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()):
            # The size rule depends on the feature's parity: an exported graph keeps both (an ONNX If),
            # not only the one of the example input.
            odd = (x.shape[2] % f) * (x.shape[3] % f) != 0  # a symbolic bool: no guard on the example's sizes
            out = torch.cond(odd, lambda t: self._attend(t, True), lambda t: self._attend(t, False), (x,))
        else:
            out = self._attend(x)
        out = conv_of_concat(self.bottleneck, [x, out])
        return {'out': self.cls(out)}
