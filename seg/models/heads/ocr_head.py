"""OCRNet's head: object-contextual representations, from soft object regions.

Object-Contextual Representations for Semantic Segmentation (Yuan et al., ECCV 2020),
https://arxiv.org/abs/1909.11065

Two stages in one head (mmsegmentation builds them as the two decode heads of a
``CascadeEncoderDecoder``):

1. soft object regions: an FCN stage on backbone stage 3 (one 3x3 conv, classifier) predicts a
   coarse segmentation, K = num_classes logit maps, supervised (``'soft'``);
2. the object context: on stage 4 (3x3 conv to ``channels``), each region's representation
   ``f_k = sum_n s_kn x_n`` with ``s_k = softmax_n(logits_k)``; each pixel weighs the K regions,
   ``w_pk = softmax_k(q_p . k_k / sqrt(ocr_channels))`` (query, key and value projections to
   ``ocr_channels``), gathers ``sum_k w_pk v_k``, projects it back and fuses it with its own
   feature (1x1 conv on the concatenation) before the classifier (``'out'``).

The pixel-region attention is N x K (K classes): small, never N x N.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seg.models.attention import AttentionModule, check_input, check_int
from seg.models.attention.base import AttentionMap
from seg.models.layers import Classifier, ConvBNReLU, conv_of_concat
from seg.registry import MODELS

from .fcn_head import FCNHead

__all__ = ['OCRHead', 'ObjectContext']


class ObjectContext(AttentionModule):
    """OCR's object context block: ``(x (B, C, H, W), region logits (B, K, H, W)) -> (B, C, H, W)``.

    Not in the attention zoo (it takes the soft object regions as a second input), but an
    :class:`AttentionModule` so that the visualiser records and draws it: the soft object regions
    (``regions``, the logits as they come in) and, for a point, where its object context comes
    from (``query`` / ``key``: the pixel-region weights).

    Args:
        channels: input (and output) channels C.
        key_channels: width of the query / key / value projections (``ocr_channels``).
        norm: norm of its 1x1 ConvBNReLUs.
    """

    attention_maps = {'regions': 'input', 'query': 'query', 'key': 'key'}

    def __init__(self, channels: int, key_channels: int, norm: str = 'BN') -> None:
        super().__init__()
        self.channels = check_int('ObjectContext', 'channels', channels)
        self.key_channels = check_int('ObjectContext', 'key_channels', key_channels)
        self.regions = nn.Identity()  # a tap for the recorder: the soft object regions
        self.query = nn.Sequential(ConvBNReLU(channels, key_channels, 1, norm=norm),
                                   ConvBNReLU(key_channels, key_channels, 1, norm=norm))
        self.key = nn.Sequential(ConvBNReLU(channels, key_channels, 1, norm=norm),
                                 ConvBNReLU(key_channels, key_channels, 1, norm=norm))
        self.value = ConvBNReLU(channels, key_channels, 1, norm=norm)
        self.conv_out = ConvBNReLU(key_channels, channels, 1, norm=norm)
        self.bottleneck = ConvBNReLU(2 * channels, channels, 1, norm=norm)

    def extra_repr(self) -> str:
        return f'key_channels={self.key_channels}'

    def forward(self, x: Tensor, regions: Tensor) -> Tensor:
        """Object-contextual features of ``x`` given the region logits (B, K, H, W) at its size."""
        check_input('ObjectContext', x, self.channels)
        if regions.dim() != 4 or regions.shape[0] != x.shape[0] or regions.shape[2:] != x.shape[2:]:
            raise ValueError(f'ObjectContext expects region logits (B, K, H, W) at the size of x '
                             f'{tuple(x.shape)}, got {tuple(regions.shape)}')
        b, c, h, w = x.shape
        region_weights = torch.softmax(self.regions(regions).flatten(2).float(), dim=-1).to(x.dtype)  # [B, K, N]
        feats = torch.matmul(region_weights, x.flatten(2).transpose(1, 2))  # [B, K, C]
        feats = feats.transpose(1, 2).unsqueeze(-1)  # [B, C, K, 1]: the K region representations
        query = self.query(x).flatten(2).transpose(1, 2)  # [B, N, Ck]
        key = self.key(feats).flatten(2)  # [B, Ck, K]
        value = self.value(feats).flatten(2).transpose(1, 2)  # [B, K, Ck]
        logits = torch.matmul(query, key) * self.key_channels ** -0.5  # [B, N, K]
        weights = torch.softmax(logits.float(), dim=-1).to(value.dtype)
        context = torch.matmul(weights, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return conv_of_concat(self.bottleneck, [self.conv_out(context), x])

    def maps(self, records, locate=None):
        """Without a point: the soft object regions of the (at most three) classes the coarse
        segmentation predicts most (``region-c<k>``: ``s_k``, the weights of ``f_k``). For a point p:
        where its object context comes from (``object-context``: ``sum_k w_pk s_k``) and the region
        it weighs most (``top-region``)."""
        regions, queries, keys = (records.get(name) or [] for name in ('regions', 'query', 'key'))
        if not regions:
            return {}
        logits = regions[-1][0].float()  # [K, H, W]
        k, h, w = logits.shape
        spatial = torch.softmax(logits.flatten(1), dim=-1).view(k, h, w)  # s_k
        if locate is None:
            counts = torch.bincount(logits.argmax(0).flatten(), minlength=k)
            top = [int(c) for c in counts.argsort(descending=True)[:3] if counts[c] > 0]
            return {f'region-c{c}': AttentionMap('spatial', spatial[c], f'soft object region of class {c} '
                                                 f'(softmax over positions of its coarse logits)') for c in top}
        if not queries or not keys:
            return {}
        i, j = locate(h, w)
        query = queries[-1][0, :, i, j].float()  # [Ck]
        key = keys[-1][0].float().flatten(1)  # [Ck, K]
        weights = torch.softmax(query @ key * self.key_channels ** -0.5, dim=0)  # [K]
        best = int(weights.argmax())
        return {'object-context': AttentionMap('point', torch.einsum('k,khw->hw', weights, spatial),
                                               'where the point\'s object context comes from: sum_k w_pk s_k'),
                'top-region': AttentionMap('point', spatial[best], f'the region the point weighs most: class '
                                           f'{best}, w = {float(weights[best]):.2f}')}


@MODELS.register_module()
class OCRHead(nn.Module):
    """FCN stage on stage 3 -> soft object regions (``'soft'``); 3x3 conv on stage 4 -> object
    context block -> classifier (``'out'``).

    Args:
        in_channels: channels of the stage-4 feature.
        channels: width of the OCR stage.
        num_classes: number of classes K (also the number of soft object regions).
        ocr_channels: width of the object context block's query / key / value.
        in_index: which backbone feature the OCR stage reads.
        soft_in_channels: channels of the FCN stage's feature (None: ``in_channels // 2``, a
            ResNet's stage 3).
        soft_channels: width of the FCN stage.
        soft_in_index: which backbone feature the FCN stage reads.
        dropout: dropout before both classifiers.
        norm: norm of every convolution.

    In training the head returns ``'out'`` and the FCN stage's logits ``'soft'`` (mmsegmentation
    weights them 1 and 0.4); in eval only ``'out'``.
    """

    outputs = ('out', 'soft')
    """The keys ``forward`` returns in training, each supervised (the segmentor's ``loss_weights``)."""
    output_weights = {'soft': 0.4}
    """mmsegmentation's loss weight of the soft regions (the model factory reads it)."""
    replaces_auxiliary = True
    """The FCN stage is the auxiliary head of the other models: the model factory drops theirs."""

    @classmethod
    def skeleton_inputs(cls, decode_head: dict, auxiliary_head: dict | None) -> dict:
        """The FCN stage reads the auxiliary head's feature at its width (the model factory)."""
        if not auxiliary_head:
            return {}
        return dict(soft_in_channels=auxiliary_head['in_channels'], soft_channels=auxiliary_head['channels'],
                    soft_in_index=auxiliary_head.get('in_index', 2))

    def __init__(self, in_channels: int, channels: int, num_classes: int, ocr_channels: int = 256,
                 in_index: int = 3, soft_in_channels: int | None = None, soft_channels: int = 256,
                 soft_in_index: int = 2, dropout: float = 0.1, norm: str = 'BN') -> None:
        super().__init__()
        if soft_in_channels is None:
            soft_in_channels = in_channels // 2
        self.in_index = in_index
        self.soft_head = FCNHead(soft_in_channels, soft_channels, num_classes, num_convs=1, concat_input=False,
                                 in_index=soft_in_index, dropout=dropout, norm=norm)
        self.conv_in = ConvBNReLU(in_channels, channels, 3, norm=norm)
        self.context = ObjectContext(channels, ocr_channels, norm=norm)
        self.cls = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        soft = self.soft_head(feats)['out']  # [B, K, H, W]
        out = self.context(self.conv_in(feats[self.in_index]), soft)
        outs = {'out': self.cls(out)}
        if self.training:
            outs['soft'] = soft
        return outs
