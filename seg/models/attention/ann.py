"""Asymmetric Non-local Neural Networks for Semantic Segmentation (Zhu et al., ICCV 2019),
https://arxiv.org/abs/1908.07678

A non-local block whose keys and values are not every pixel but the cells of a spatial pyramid
pooling of them (average pooling to 1x1, 3x3, 6x6 and 8x8: S = 110 cells), so that attention costs
N x S instead of N x N. As in mmsegmentation (``SelfAttentionBlock`` of its ANNHead):

* query and key projections are 1x1 conv -> norm -> ReLU to ``project_channels``, the value projection
  a plain 1x1 conv (with bias) to the same width; keys and values are pooled after projection;
* ``softmax_s(q_p . k_s / sqrt(project_channels))`` over the S cells weighs the pooled values, and a
  1x1 ``out_project`` (with bias, starting at zero) maps the context back;
* a query scale ``s > 1`` max-pools the queries by ``s`` first (mmsegmentation's ``query_scales``).

:class:`APNB` (asymmetric pyramid non-local block): self-attention, keys and queries sharing one
projection, then ``1x1 conv -> norm -> ReLU`` of ``[context, x]``: a zoo module (``'apnb'``).
:class:`AFNB` (asymmetric fusion non-local block): the queries from the high-level feature (stage 4),
keys and values from the low-level one (stage 3), then ``1x1 conv -> norm`` (no ReLU) of
``[context, high]``. It takes two inputs, so it is no zoo module (not registered), but an
:class:`AttentionModule` all the same, which the visualiser records and draws.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seg.models.layers import ConvBNReLU, conv_of_concat
from seg.models.norm import NORMS, build_norm
from seg.registry import ATTENTION

from .base import AttentionMap, AttentionModule, check_input, check_int

__all__ = ['AFNB', 'APNB', 'PyramidAttention', 'pool_bins', 'pyramid_pool', 'pyramid_pool_matrix']


def pool_bins(size: int, cells: int, like: Tensor | None = None) -> Tensor:
    """Adaptive average pooling of ``size`` positions to ``cells`` as a (cells, size) matrix: row i averages
    ``[floor(i size / cells), ceil((i + 1) size / cells))`` (PyTorch's bins; they overlap where ``cells``
    does not divide ``size``). Written with tensor arithmetic, so an exported graph (ONNX, dynamic sizes)
    computes the bins of the size it is given. In ``like``'s dtype and device."""
    options = dict(device=like.device, dtype=like.dtype) if like is not None else {}
    pos = torch.arange(size, device=options.get('device'))  # [size]
    cell = torch.arange(cells, device=options.get('device'))  # [cells]
    start, stop = (cell * size) // cells, ((cell + 1) * size + cells - 1) // cells  # [cells]
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < stop[:, None])  # [cells, size]
    return inside.to(**options) / (stop - start)[:, None].to(**options)


def pyramid_pool(x: Tensor, scales: Sequence[int]) -> Tensor:
    """Adaptive average pooling of ``x`` (B, C, H, W) to each ``s x s`` of ``scales``, cells concatenated
    in order (row-major within a level): (B, C, S) with ``S = sum s^2``; ``F.adaptive_avg_pool2d``'s
    values, through :func:`pool_bins`."""
    h, w = x.shape[-2:]
    levels = [torch.einsum('bchw,ih,jw->bcij', x, pool_bins(h, s, x), pool_bins(w, s, x)).flatten(2)
              for s in scales]
    return torch.cat(levels, dim=2)  # [B, C, S]


def pyramid_pool_matrix(h: int, w: int, scales: Sequence[int], like: Tensor | None = None) -> Tensor:
    """The (S, H W) matrix of :func:`pyramid_pool`: ``pyramid_pool(x) = x.flatten(2) @ P.T``. Row s spreads
    cell s over the pixels it averages; a point's weights over the cells times P are its weights over
    the pixels. In ``like``'s dtype and device."""
    return torch.cat([torch.kron(pool_bins(h, s, like), pool_bins(w, s, like)) for s in scales], dim=0)


def _check_scales(owner: str, name: str, scales) -> tuple[int, ...]:
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f'{owner}: {name} must be a non-empty sequence of integers >= 1, got {scales!r}')
    return tuple(check_int(owner, f'{name}[{i}]', s) for i, s in enumerate(scales))


def _check_norm(owner: str, norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"{owner}: norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


class PyramidAttention(nn.Module):
    """One attention stage: queries (max-pooled by ``query_scale``) over pyramid-pooled keys / values.

    Args:
        query_channels: channels of the query feature.
        key_channels: channels of the key / value feature.
        channels: the projection width (``project_channels``).
        out_channels: channels of the output (``out_project``).
        query_scale: max-pooling of the queries (1: none); the context is then upsampled
            (bilinear) to the query feature's size.
        key_pool_scales: the pyramid of the keys and values.
        share_key_query: one projection for keys and queries (APNB); registered under both names,
            as mmsegmentation does (its state dict holds it twice).
        norm: norm of the query / key projections.
    """

    def __init__(self, query_channels: int, key_channels: int, channels: int, out_channels: int, query_scale: int,
                 key_pool_scales: tuple[int, ...], share_key_query: bool, norm: str = 'BN') -> None:
        super().__init__()
        self.channels, self.query_scale, self.key_pool_scales = channels, query_scale, tuple(key_pool_scales)
        self.share_key_query = share_key_query
        self.key_project = ConvBNReLU(key_channels, channels, 1, norm=norm)
        self.query_project = self.key_project if share_key_query else ConvBNReLU(query_channels, channels, 1,
                                                                                 norm=norm)
        self.value_project = nn.Conv2d(key_channels, channels, 1)
        self.out_project = nn.Conv2d(channels, out_channels, 1)
        nn.init.zeros_(self.out_project.weight)  # the context starts at zero (mmsegmentation)
        nn.init.zeros_(self.out_project.bias)

    def extra_repr(self) -> str:
        return f'query_scale={self.query_scale}, key_pool_scales={self.key_pool_scales}'

    def pooled_query(self, query: Tensor) -> Tensor:
        """The projected queries (B, P, H, W) max-pooled by ``query_scale``."""
        if self.query_scale == 1:
            return query
        if min(query.shape[-2:]) < self.query_scale:
            raise ValueError(f'query_scale={self.query_scale} max-pools the queries, which needs a feature of at '
                             f'least {self.query_scale}x{self.query_scale}, got {tuple(query.shape[-2:])}')
        return F.max_pool2d(query, self.query_scale)

    def weights(self, query: Tensor, key: Tensor) -> Tensor:
        """``softmax_s(q_p . k_s / sqrt(P))``: (B, Nq, S) from the (pooled) queries and the projected keys."""
        q = query.flatten(2)  # [B, P, Nq]
        k = pyramid_pool(key, self.key_pool_scales)  # [B, P, S]
        return torch.softmax(torch.einsum('bcn,bcs->bns', q, k) * self.channels ** -0.5, dim=-1)  # [B, Nq, S]

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        """The context (B, out_channels, H, W) of every query pixel."""
        query = self.query_project(query_feats)  # [B, P, H, W]
        key = query if self.share_key_query and key_feats is query_feats else self.key_project(key_feats)
        value = pyramid_pool(self.value_project(key_feats), self.key_pool_scales)  # [B, P, S]
        query = self.pooled_query(query)  # [B, P, Hq, Wq]
        attn = self.weights(query, key)  # [B, Nq, S]
        hq, wq = query.shape[-2:]
        context = torch.einsum('bns,bcs->bcn', attn, value).reshape(*value.shape[:2], hq, wq)  # [B, P, Hq, Wq]
        context = self.out_project(context)  # [B, out, Hq, Wq]
        if self.query_scale > 1:
            context = F.interpolate(context, size=query_feats.shape[-2:], mode='bilinear', align_corners=False)
        return context


def _stage_taps(count: int) -> dict[str, str]:
    return {f'stages.{i}.{part}_project': part for i in range(count) for part in ('query', 'key')}


class _PyramidStages(AttentionModule):
    """What APNB and AFNB share: their stages (one per query scale, summed) and their maps."""

    attention_maps = _stage_taps(1)  # an instance declares every stage it has

    stages: nn.ModuleList

    def maps(self, records, locate=None):
        """Per stage and pyramid level s, the point's weights over the level's s x s cells, each cell's
        weight spread over the pixels of the key feature it averages (``level<s>``: how much the point
        draws from each pixel through that level), and their sum over the levels (``all``: the point's
        weights over the key pixels, summing to 1). Named ``stage<i>-...`` where there are several stages."""
        if locate is None:
            return {}
        out: dict[str, AttentionMap] = {}
        for n, stage in enumerate(self.stages):
            qs = records.get(f'stages.{n}.query_project') or []
            ks = records.get(f'stages.{n}.key_project') or []
            if not qs or not ks:
                continue
            with torch.no_grad():
                query = stage.pooled_query(qs[-1][:1].float())  # [1, P, Hq, Wq]
                key = ks[-1][:1].float()  # [1, P, Hk, Wk]
                i, j = locate(*query.shape[-2:])
                if not (0 <= i < query.shape[2] and 0 <= j < query.shape[3]):
                    raise ValueError(f'pixel (row {i}, col {j}) is outside the '
                                     f'{query.shape[2]}x{query.shape[3]} map')
                q = query[:, :, i:i + 1, j:j + 1]
                weights = stage.weights(q, key)[0, 0]  # [S]
                hk, wk = key.shape[-2:]
                pool = pyramid_pool_matrix(hk, wk, stage.key_pool_scales, key)  # [S, Hk Wk]
            prefix = f'stage{n}-' if len(self.stages) > 1 else ''
            start = 0
            for s in stage.key_pool_scales:
                cells = slice(start, start + s * s)
                start += s * s
                level = (weights[cells] @ pool[cells]).reshape(hk, wk)
                out[f'{prefix}level{s}'] = AttentionMap(
                    'point', level, f'weights over the {s}x{s} pooled keys, spread over their pixels')
            out[f'{prefix}all'] = AttentionMap('point', (weights @ pool).reshape(hk, wk),
                                               'weights over the key pixels, all levels')
        return out


@ATTENTION.register_module(name='apnb')
class APNB(_PyramidStages):
    """Asymmetric pyramid non-local block: ``relu(norm(W [sum_stages context(x), x]))``, 1x1 ``W``.

    Args:
        channels: input (and output) channels C.
        project_channels: the key / query / value width P; ``None``: ``C // 2`` (mmsegmentation's
            ANNNet: 256 for C = 512).
        query_scales: one stage per scale, their contexts summed (mmsegmentation: ``(1,)``).
        key_pool_scales: the pyramid of the keys (the paper's and mmsegmentation's ``(1, 3, 6, 8)``).
        norm: norm of the projections and the output conv.

    Parameters (per stage; the key / query projection is shared): ``C P + 2 P`` (key / query conv and
    norm) ``+ C P + P`` (value) ``+ P C + C`` (out), plus ``2 C C + 2 C`` (output conv and norm).
    A point's maps are recomputed from the query / key projections.
    """

    @classmethod
    def param_count(cls, channels: int, project_channels: int | None = None, query_scales=(1,),
                    key_pool_scales=(1, 3, 6, 8), norm: str = 'BN') -> int:
        p = max(1, channels // 2) if project_channels is None else project_channels
        bn = 0 if norm == 'none' else 2
        stage = channels * p + bn * p + channels * p + p + p * channels + channels
        return len(query_scales) * stage + 2 * channels * channels + bn * channels

    def __init__(self, channels: int, project_channels: int | None = None, query_scales: Sequence[int] = (1,),
                 key_pool_scales: Sequence[int] = (1, 3, 6, 8), norm: str = 'BN') -> None:
        super().__init__()
        self.channels = check_int('APNB', 'channels', channels)
        if project_channels is None:
            project_channels = max(1, channels // 2)
        self.project_channels = check_int('APNB', 'project_channels', project_channels)
        self.query_scales = _check_scales('APNB', 'query_scales', query_scales)
        self.key_pool_scales = _check_scales('APNB', 'key_pool_scales', key_pool_scales)
        norm = _check_norm('APNB', norm)
        self.attention_maps = _stage_taps(len(self.query_scales))
        self.stages = nn.ModuleList(
            PyramidAttention(channels, channels, self.project_channels, channels, s, self.key_pool_scales,
                             share_key_query=True, norm=norm) for s in self.query_scales)
        # conv -> norm here, the ReLU in forward (the keys of a ConvBNReLU: bottleneck.0 / .1)
        self.bottleneck = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False),
                                        build_norm(norm, channels))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, C, H, W) fused with its pyramid-key self-attention context."""
        check_input('APNB', x, self.channels)
        context = self.stages[0](x, x)
        for stage in self.stages[1:]:
            context = context + stage(x, x)
        # ReLU as clamp_min: the same values, but its backward keeps its input, not its output, so that a
        # caller may add to the output in place (a backbone block adds its shortcut so).
        return conv_of_concat(self.bottleneck, [context, x]).clamp_min(0)


class AFNB(_PyramidStages):
    """Asymmetric fusion non-local block: ``norm(W [sum_stages context(high | low), high])``, 1x1 ``W``.

    Queries come from ``high`` (stage 4), keys and values from ``low`` (stage 3, pyramid-pooled, so
    its size may differ). Not a zoo module (two inputs); ``forward(low, high)``.

    Args:
        low_channels: channels of the low-level (key / value) feature.
        high_channels: channels of the high-level (query) feature.
        project_channels: the key / query / value width P.
        out_channels: output channels; ``None``: ``high_channels`` (as mmsegmentation's ANNHead).
        query_scales: one stage per scale, their contexts summed.
        key_pool_scales: the pyramid of the keys.
        norm: norm of the projections and the output conv.
    """

    def __init__(self, low_channels: int, high_channels: int, project_channels: int,
                 out_channels: int | None = None, query_scales: Sequence[int] = (1,),
                 key_pool_scales: Sequence[int] = (1, 3, 6, 8), norm: str = 'BN') -> None:
        super().__init__()
        self.low_channels = check_int('AFNB', 'low_channels', low_channels)
        self.high_channels = check_int('AFNB', 'high_channels', high_channels)
        self.project_channels = check_int('AFNB', 'project_channels', project_channels)
        out = high_channels if out_channels is None else check_int('AFNB', 'out_channels', out_channels)
        self.out_channels = out
        self.query_scales = _check_scales('AFNB', 'query_scales', query_scales)
        self.key_pool_scales = _check_scales('AFNB', 'key_pool_scales', key_pool_scales)
        norm = _check_norm('AFNB', norm)
        self.attention_maps = _stage_taps(len(self.query_scales))
        self.stages = nn.ModuleList(
            PyramidAttention(high_channels, low_channels, project_channels, out, s, self.key_pool_scales,
                             share_key_query=False, norm=norm) for s in self.query_scales)
        self.bottleneck = nn.Sequential(nn.Conv2d(out + high_channels, out, 1, bias=False), build_norm(norm, out))

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        """The high-level feature (B, high_channels, H, W) fused with its context from ``low``."""
        check_input('AFNB', low, self.low_channels)
        check_input('AFNB', high, self.high_channels)
        if low.shape[0] != high.shape[0]:
            raise ValueError(f'AFNB: low and high must have the same batch size, got {tuple(low.shape)} '
                             f'and {tuple(high.shape)}')
        context = self.stages[0](high, low)
        for stage in self.stages[1:]:
            context = context + stage(high, low)
        return conv_of_concat(self.bottleneck, [context, high])
