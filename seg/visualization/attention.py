"""What the attention modules of a trained segmentor look at, drawn over the input image.

CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., ICCV 2019),
https://arxiv.org/abs/1811.11721 -- criss-cross weights of one pixel and their composition over
the recurrent passes; Dual Attention Network for Scene Segmentation (Fu et al., CVPR 2019),
https://arxiv.org/abs/1809.02983 -- PAM rows and CAM channel weights; Non-local Neural Networks
(Wang et al., CVPR 2018), https://arxiv.org/abs/1711.07971 -- non-local rows;
Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization (Selvaraju et al.,
ICCV 2017), https://arxiv.org/abs/1610.02391 -- class evidence, with the ``grad-cam`` package.

Attention is captured with forward hooks (no model's forward is changed), at the module's own
resolution: the criss-cross, PAM and non-local weights are recomputed from the hooked query / key
tensors with the ops' math (functions below, tested against the ops); the gates of the attention
zoo are the outputs of their gate submodules. Maps are upsampled (nearest neighbour, so the
feature cells stay visible) to the image only for display.
"""
from __future__ import annotations

import json
import logging
import math
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['AttentionRecorder', 'channel_attention_matrix', 'criss_cross_effective_map',
           'criss_cross_pixel_map', 'criss_cross_pixel_weights', 'criss_cross_positions',
           'criss_cross_propagate', 'criss_cross_weights', 'heatmap_overlay', 'nonlocal_attention_row',
           'parse_point', 'position_attention_row', 'visualize_attention']

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ attention math
def criss_cross_weights(q: Tensor, k: Tensor) -> Tensor:
    """Criss-cross attention weights of every pixel, with the op's math.

    One softmax per pixel over the logits ``q_(i,j) . k`` of its column and its row, unscaled, the
    pixel itself counted once (masked out of the column), as in
    :func:`seg.ops.criss_cross_attention`.

    Args:
        q: queries [B, C, H, W].
        k: keys [B, C, H, W].

    Returns:
        [B, H, W, H + W]: for pixel (i, j), entries ``[:H]`` weigh the column pixels (y, j) (entry i,
        the pixel itself, is 0) and entries ``[H:]`` the row pixels (i, x) (entry j is the pixel's
        own weight). Each pixel's weights sum to 1.

    Raises:
        ValueError: if ``q`` and ``k`` are not equal-shape 4-D tensors.
    """
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(f'q and k must be [B, C, H, W] of equal shape, got {tuple(q.shape)} and {tuple(k.shape)}')
    h = q.shape[2]
    q, k = q.float(), k.float()
    col = torch.einsum('bciw,bcyw->biwy', q, k)  # [B, H, W, H]: (i, j) against (y, j)
    col = col.masked_fill(torch.eye(h, dtype=torch.bool, device=q.device).view(h, 1, h), float('-inf'))
    row = torch.einsum('bchw,bchx->bhwx', q, k)  # [B, H, W, W]: (i, j) against (i, x)
    return torch.softmax(torch.cat([col, row], dim=-1), dim=-1)  # [B, H, W, H + W]


def criss_cross_positions(h: int, w: int, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the H + W - 1 pixels pixel (i, j) attends to, in the order of
    :func:`criss_cross_pixel_weights`: its column top to bottom (itself included), then its row
    left to right without itself."""
    ys = np.concatenate([np.arange(h), np.full(w - 1, i)])
    xs = np.concatenate([np.full(h, j), np.arange(j), np.arange(j + 1, w)])
    return ys, xs


def criss_cross_pixel_weights(q: Tensor, k: Tensor, i: int, j: int) -> Tensor:
    """The H + W - 1 criss-cross attention weights of pixel (i, j).

    Args:
        q: queries [B, C, H, W].
        k: keys [B, C, H, W].
        i: row of the pixel.
        j: column of the pixel.

    Returns:
        [B, H + W - 1] weights over :func:`criss_cross_positions` (column incl. the pixel, then the
        row without it), so that ``weights @ values`` at those positions is the op's output at (i, j).

    Raises:
        ValueError: on bad shapes or a pixel outside the map.
    """
    h, w = q.shape[-2:]
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    qp = q[:, :, i, j].float()  # [B, C]: only this pixel's query
    col = torch.einsum('bc,bcy->by', qp, k[:, :, :, j].float())  # [B, H]
    row = torch.einsum('bc,bcx->bx', qp, k[:, :, i, :].float())  # [B, W]
    logits = torch.cat([col, row[:, :j], row[:, j + 1:]], dim=1)  # [B, H + W - 1]
    return torch.softmax(logits, dim=1)  # one softmax over the whole cross


def criss_cross_pixel_map(q: Tensor, k: Tensor, i: int, j: int) -> Tensor:
    """The criss-cross weights of pixel (i, j) laid out on the map: [B, H, W], zero off its cross."""
    h, w = q.shape[-2:]
    weights = criss_cross_pixel_weights(q, k, i, j)  # [B, H + W - 1]
    ys, xs = criss_cross_positions(h, w, i, j)
    out = weights.new_zeros(q.shape[0], h, w)  # [B, H, W]
    out[:, torch.from_numpy(ys), torch.from_numpy(xs)] = weights
    return out


def criss_cross_propagate(dist: Tensor, attn: Tensor) -> Tensor:
    """``dist @ A`` for one criss-cross pass A given as :func:`criss_cross_weights`.

    Args:
        dist: [B, H, W] weights over the output pixels of the pass.
        attn: [B, H, W, H + W] the pass's weights.

    Returns:
        [B, H, W]: how much each input pixel of the pass contributes, ``sum_p dist[p] A[p, n]``.
    """
    h = dist.shape[1]
    attn_col, attn_row = attn[..., :h], attn[..., h:]  # [B, H, W, H], [B, H, W, W]
    out = torch.einsum('bij,bijy->byj', dist, attn_col)  # [B, H, W]: mass sent up / down the column
    return out + torch.einsum('bij,bijx->bix', dist, attn_row)  # [B, H, W]: and along the row


def criss_cross_effective_map(attns: Sequence[Tensor], i: int, j: int) -> Tensor:
    """Where the output of pixel (i, j) after R criss-cross passes draws from.

    The row of ``A_R A_(R-1) ... A_1`` for the pixel (the composition of the passes' attention
    matrices, the last pass first; residual connections and value projections left out). At R = 1
    it is the pixel's cross, from R = 2 on it covers the whole map.

    Args:
        attns: per pass, in forward order, its [B, H, W, H + W] weights.
        i, j: the pixel.

    Returns:
        [B, H, W] non-negative weights summing to 1.

    Raises:
        ValueError: if no pass is given or the pixel is outside the map.
    """
    if not attns:
        raise ValueError('criss_cross_effective_map needs at least one pass')
    b, h, w = attns[0].shape[:3]
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    dist = attns[0].new_zeros(b, h, w)  # [B, H, W]
    dist[:, i, j] = 1.0
    for attn in reversed(attns):
        dist = criss_cross_propagate(dist, attn)
    return dist


def position_attention_row(q: Tensor, k: Tensor, i: int, j: int, scale: float = 1.0) -> Tensor:
    """Pixel (i, j)'s row of full position attention ``softmax_n(scale * q_p . k_n)`` (DANet's PAM with
    ``scale=1``, the embedded-Gaussian non-local block with ``1/sqrt(C)``), as a [B, H, W] map.

    Raises:
        ValueError: on bad shapes or a pixel outside the map.
    """
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(f'q and k must be [B, C, H, W] of equal shape, got {tuple(q.shape)} and {tuple(k.shape)}')
    b, _, h, w = q.shape
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'pixel (row {i}, col {j}) is outside the {h}x{w} map')
    logits = torch.einsum('bc,bcn->bn', q[:, :, i, j].float(), k.float().flatten(2)) * scale  # [B, N]
    return torch.softmax(logits, dim=1).reshape(b, h, w)  # [B, H, W]


def nonlocal_attention_row(block: nn.Module, x: Tensor, i: int, j: int) -> Tensor:
    """Pixel (i, j)'s pairwise weights ``f(x_p, x_n) / C(x)`` in a :class:`NonLocal2d` block.

    Args:
        block: the non-local block (its ``theta`` / ``phi`` / ``concat_project`` are used).
        x: the block's input [B, C, H, W].
        i, j: the pixel.

    Returns:
        [B, H, W]: softmax rows for the Gaussian modes; ``theta_p . phi_n / N`` (may be negative) for
        ``dot_product``; ``relu(w_theta . theta_p + w_phi . phi_n) / N`` for ``concatenation``.
    """
    b, _, h, w = x.shape
    with torch.no_grad():
        if block.mode == 'gaussian':
            return position_attention_row(x, x, i, j, 1.0)
        theta, phi = block.theta(x), block.phi(x)  # [B, Ci, H, W] each
        if block.mode == 'embedded_gaussian':
            scale = 1.0 / math.sqrt(block.inter) if block.use_scale else 1.0
            return position_attention_row(theta, phi, i, j, scale)
        n = h * w
        if block.mode == 'dot_product':
            row = torch.einsum('bc,bcn->bn', theta[:, :, i, j], phi.flatten(2)) / n  # [B, N]
        else:
            weight = block.concat_project.weight.view(2, -1)  # [2, Ci]
            a = torch.einsum('c,bc->b', weight[0], theta[:, :, i, j])  # [B]
            bj = torch.einsum('c,bcn->bn', weight[1], phi.flatten(2))  # [B, N]
            row = torch.relu(a[:, None] + bj) / n  # [B, N]
    return row.reshape(b, h, w)  # [B, H, W]


def channel_attention_matrix(x: Tensor) -> Tensor:
    """DANet's CAM weights ``softmax(max(E) - E)`` with ``E = X X^T`` over pixels: [B, C, C], rows sum to 1."""
    b, c = x.shape[:2]
    flat = x.float().reshape(b, c, -1)  # [B, C, N]
    energy = torch.bmm(flat, flat.transpose(1, 2))  # [B, C, C]
    return torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)  # [B, C, C]


# ------------------------------------------------------------------------------------- capture
def _kinds() -> list[tuple[type, str]]:
    from seg.models.attention import CBAM, ECA, GAM, SE, CoordAttention, SimAM
    from seg.models.blocks import ChannelAttention, CrissCrossAttention, NonLocal2d, PositionAttention

    return [(CrissCrossAttention, 'cc'), (PositionAttention, 'pam'), (ChannelAttention, 'cam'),
            (NonLocal2d, 'nonlocal'), (SE, 'se'), (ECA, 'eca'), (CBAM, 'cbam'), (CoordAttention, 'coord'),
            (GAM, 'gam'), (SimAM, 'simam')]


# Which submodule outputs (or '' for the module's input) each kind records.
_TAPS = {
    'cc': ('query', 'key'), 'pam': ('query', 'key'), 'cam': ('',), 'nonlocal': ('',),
    'se': ('gate',), 'eca': ('gate',), 'cbam': ('channel_gate', 'spatial_gate'),
    'coord': ('gate_h', 'gate_w'), 'gam': ('channel_gate', 'spatial_gate'), 'simam': ('gate',),
}


class AttentionRecorder:
    """Forward hooks on every supported attention module of a model, recording what it computes.

    Supported: criss-cross (q, k of every pass), PAM (q, k), CAM and non-local (their input), SE /
    ECA / SimAM (``gate``), CBAM / GAM (``channel_gate``, ``spatial_gate``), Coordinate Attention
    (``gate_h``, ``gate_w``). Use as a context manager; the hooks are removed on exit.

    Attributes:
        modules: ``{module name: (kind, module)}`` of the modules found.
        records: ``{module name: {tap: [tensor per call]}}`` (tensors detached, on the CPU).
    """

    def __init__(self, model: nn.Module) -> None:
        kinds = _kinds()
        self.modules: dict[str, tuple[str, nn.Module]] = {}
        for name, module in model.named_modules():
            for cls, kind in kinds:
                if isinstance(module, cls):
                    self.modules[name] = (kind, module)
                    break
        self.records: dict[str, dict[str, list[Tensor]]] = defaultdict(lambda: defaultdict(list))
        self._handles: list = []

    def _hook(self, name: str, tap: str, use_input: bool):
        def fn(module, inputs, output):
            value = inputs[0] if use_input else output
            self.records[name][tap].append(value.detach().float().cpu())
        return fn

    def __enter__(self) -> AttentionRecorder:
        for name, (kind, module) in self.modules.items():
            for tap in _TAPS[kind]:
                target = module if tap == '' else getattr(module, tap)
                self._handles.append(target.register_forward_hook(self._hook(name, tap or 'input', tap == '')))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


# ------------------------------------------------------------------------------------- drawing
def parse_point(text: str) -> tuple[int, int]:
    """``'x,y'`` -> ``(x, y)`` pixel coordinates of the original image.

    Raises:
        ValueError: if the text is not two integers separated by a comma.
    """
    m = re.fullmatch(r'\s*(-?\d+)\s*,\s*(-?\d+)\s*', str(text))
    if not m:
        raise ValueError(f'a point must be given as x,y (two integers), got {text!r}')
    return int(m.group(1)), int(m.group(2))


@dataclass
class _Geometry:
    """Sizes linking a feature map to the original image."""

    ori: tuple[int, int]  # original image (H, W)
    img: tuple[int, int]  # after the test pipeline, unpadded (H, W)
    pad: tuple[int, int]  # the network input (H, W), padding included

    def to_feature(self, x: int, y: int, feat_hw: tuple[int, int]) -> tuple[int, int]:
        """Original pixel (x, y) -> (row, col) of a feature map covering the padded input."""
        fh, fw = feat_hw
        xi = (x + 0.5) * self.img[1] / self.ori[1]
        yi = (y + 0.5) * self.img[0] / self.ori[0]
        return (min(fh - 1, max(0, int(yi * fh / self.pad[0]))),
                min(fw - 1, max(0, int(xi * fw / self.pad[1]))))

    def to_image(self, fmap: np.ndarray) -> np.ndarray:
        """A [h, w] map over the padded input -> [H, W] over the original image (nearest neighbour)."""
        fmap = np.asarray(fmap, dtype=np.float32)
        up = cv2.resize(fmap, (self.pad[1], self.pad[0]), interpolation=cv2.INTER_NEAREST)  # [Hp, Wp]
        up = up[:self.img[0], :self.img[1]]  # [Hi, Wi]
        return cv2.resize(up, (self.ori[1], self.ori[0]), interpolation=cv2.INTER_NEAREST)  # [H, W]


def heatmap_overlay(image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.55,
                    point: tuple[int, int] | None = None, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """A heatmap blended over an image, min-max normalised for display.

    Args:
        image_rgb: [H, W, 3] uint8.
        heat: [H, W] float map at the image's size.
        alpha: weight of the heatmap colours.
        point: optional (x, y) drawn as a white ring.
        colormap: an OpenCV colormap.

    Returns:
        [H, W, 3] uint8 RGB.

    Raises:
        ValueError: if the sizes differ.
    """
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != image_rgb.shape[:2]:
        raise ValueError(f'heat {heat.shape} and image {image_rgb.shape[:2]} must have the same size')
    lo, hi = float(np.nanmin(heat)), float(np.nanmax(heat))
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colours = cv2.applyColorMap(np.uint8(np.round(255 * norm)), colormap)  # [H, W, 3] BGR
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    out = cv2.addWeighted(np.ascontiguousarray(image_rgb), 1.0 - alpha, colours, alpha, 0.0)
    if point is not None:
        radius = max(3, min(heat.shape) // 40)
        cv2.circle(out, point, radius + 1, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.circle(out, point, radius, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def _write_rgb(path: str, rgb: np.ndarray) -> str:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path!r}')
    return path


@dataclass
class _Writer:
    out_dir: str
    stem: str
    image: np.ndarray
    geom: _Geometry
    alpha: float
    manifest: list[dict] = field(default_factory=list)

    def path(self, *parts: str) -> str:
        return osp.join(self.out_dir, '_'.join([self.stem, *parts]) + '.png')

    def heat(self, fmap: Tensor, point: tuple[int, int] | None, info: dict, *parts: str, power: float = 1.0) -> str:
        """Write a feature-resolution map over the image; ``power`` < 1 lifts small values for display."""
        arr = fmap.detach().float().cpu().numpy()  # [h, w]
        shown = np.power(np.clip(arr, 0.0, None), power) if power != 1.0 else arr
        path = _write_rgb(self.path(*parts), heatmap_overlay(self.image, self.geom.to_image(shown), self.alpha, point))
        self.manifest.append(dict(info, file=osp.basename(path), resolution=list(arr.shape),
                                  min=float(arr.min()), max=float(arr.max()),
                                  display='linear' if power == 1.0 else f'weights ** {power:g}'))
        return path


def _module_tag(name: str) -> str:
    return name.replace('.', '-') or 'model'


def _draw_module(writer: _Writer, name: str, kind: str, module: nn.Module, taps: dict[str, list[Tensor]],
                 points: list[tuple[int, int]], top: int) -> list[str]:
    """Write the maps of one recorded module; returns the paths."""
    from .plots import channel_bar_chart

    tag = _module_tag(name)
    paths = []
    if kind == 'cc':
        qs, ks = taps['query'], taps['key']
        attns = [criss_cross_weights(q, k) for q, k in zip(qs, ks)]  # per pass [B, H, W, H + W]
        for x, y in points:
            i, j = writer.geom.to_feature(x, y, tuple(qs[0].shape[-2:]))
            base = dict(module=name, kind=kind, point=[x, y], feature_pixel=[i, j])
            for r, (q, k) in enumerate(zip(qs, ks), 1):
                paths.append(writer.heat(criss_cross_pixel_map(q, k, i, j)[0], (x, y),
                                         dict(base, what=f'criss-cross weights of pass {r}'),
                                         'cc', tag, f'pass{r}', f'x{x}', f'y{y}'))
            paths.append(writer.heat(criss_cross_effective_map(attns, i, j)[0], (x, y),
                                     dict(base, what=f'effective map after R={len(attns)} passes'),
                                     'cc', tag, f'effective-R{len(attns)}', f'x{x}', f'y{y}', power=0.5))
    elif kind in ('pam', 'nonlocal'):
        calls = taps['query'] if kind == 'pam' else taps['input']
        for call in range(len(calls)):
            suffix = [f'call{call + 1}'] if len(calls) > 1 else []
            for x, y in points:
                i, j = writer.geom.to_feature(x, y, tuple(calls[call].shape[-2:]))
                if kind == 'pam':
                    row = position_attention_row(taps['query'][call], taps['key'][call], i, j, 1.0)[0]
                else:
                    inp = calls[call].to(next(module.parameters()).device)
                    row = nonlocal_attention_row(module, inp, i, j)[0]
                paths.append(writer.heat(row, (x, y), dict(module=name, kind=kind, point=[x, y],
                                                           feature_pixel=[i, j], what='attention row'),
                                         kind, tag, *suffix, f'x{x}', f'y{y}'))
    else:
        channel, spatial = None, None
        if kind == 'cam':
            channel = channel_attention_matrix(taps['input'][-1])[0].mean(dim=0)  # [C]: received per channel
        elif kind in ('se', 'eca'):
            channel = taps['gate'][-1][0].reshape(-1)  # [C]
        elif kind == 'cbam':
            channel = taps['channel_gate'][-1][0].reshape(-1)  # [C]
            spatial = taps['spatial_gate'][-1][0, 0]  # [H, W]
        elif kind == 'coord':
            spatial = (taps['gate_h'][-1][0] * taps['gate_w'][-1][0]).mean(dim=0)  # [C, H, W] -> [H, W]
        elif kind == 'gam':
            spatial = taps['spatial_gate'][-1][0].mean(dim=0)  # [H, W]
        elif kind == 'simam':
            spatial = taps['gate'][-1][0].mean(dim=0)  # [H, W]
        if channel is not None:
            what = ('mean CAM attention each channel receives' if kind == 'cam'
                    else f'{kind.upper()} channel weights')
            path = channel_bar_chart(channel.numpy(), writer.path(kind, tag, 'channels'), top=top,
                                     title=f'{name}: {what}', ylabel='attention' if kind == 'cam' else 'weight')
            writer.manifest.append(dict(module=name, kind=kind, what=what, file=osp.basename(path),
                                        channels=int(channel.numel())))
            paths.append(path)
        if spatial is not None:
            what = f'{kind} spatial gate' + (' (mean over channels)' if kind != 'cbam' else '')
            paths.append(writer.heat(spatial, None, dict(module=name, kind=kind, what=what), kind, tag, 'spatial'))
    return paths


def _resolve_class(class_id: int | str | None, classes: list[str], default: int) -> int:
    if class_id is None:
        return default
    if isinstance(class_id, str) and not class_id.lstrip('-').isdigit():
        if class_id not in classes:
            raise ValueError(f'unknown class {class_id!r}; the classes are: {", ".join(classes)}')
        return classes.index(class_id)
    cid = int(class_id)
    if not 0 <= cid < len(classes):
        raise ValueError(f'class id {cid} is outside [0, {len(classes)}) ({len(classes)} classes)')
    return cid


def _cam_layers(model: nn.Module, names: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """Grad-CAM target layers: the names given, else the decode head's last feature layer(s)."""
    modules = dict(model.named_modules())
    if names:
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f'no module {missing} in the model; e.g. '
                             f'{", ".join(n for n in modules if n.startswith("decode_head.") and n.count(".") == 1)}')
        return [(n, modules[n]) for n in names]
    head = model.decode_head
    for attr in ('bottleneck', 'conv_cat'):
        if isinstance(getattr(head, attr, None), nn.Module):
            return [(f'decode_head.{attr}', getattr(head, attr))]
    outs = [(f'decode_head.{n}', m) for n, m in head.named_children() if n.endswith('_out')]
    if outs:
        return outs
    convs = [(f'decode_head.{n}', m) for n, m in head.named_modules()
             if isinstance(m, nn.Conv2d) and not n.startswith('cls') and '_cls' not in n]
    if not convs:
        raise ValueError('the decode head has no convolution for Grad-CAM; pass cam_layers')
    return [convs[-1]]


def _grad_cam(model: nn.Module, inputs: Tensor, class_id: int, pred_pad: np.ndarray,
              layers: list[tuple[str, nn.Module]]) -> np.ndarray:
    """Grad-CAM of ``class_id`` over the pixels predicted as it (all pixels if none): [Hp, Wp] in [0, 1]."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    mask = (pred_pad == class_id).astype(np.float32)
    if not mask.any():
        logger.warning('class %d is predicted nowhere; Grad-CAM targets its score summed over all pixels',
                       class_id)
        mask = np.ones_like(mask)
    cam = GradCAM(model=model, target_layers=[m for _, m in layers])
    try:
        with torch.enable_grad():
            heat = cam(input_tensor=inputs, targets=[SemanticSegmentationTarget(class_id, mask)])
    finally:
        cam.activations_and_grads.release()
    return heat[0]  # [Hp, Wp]


def visualize_attention(ckpt: str, image_path: str, out_dir: str, points: Sequence[tuple[int, int]] | None = None,
                        class_id: int | str | None = None, config: str | None = None, device: str | None = None,
                        top: int = 20, alpha: float = 0.55, cam_layers: Sequence[str] | None = None,
                        grad_cam: bool = True) -> dict[str, list[str]]:
    """Write the attention maps of a checkpoint's model for one image.

    Files (``<stem>`` = the image's file stem), for whichever modules the model contains:

    * ``<stem>_prediction.png``: the image beside the prediction overlay;
    * ``<stem>_cc_<module>_pass<r>_x<X>_y<Y>.png``: criss-cross weights of the point's feature pixel in
      pass r; ``..._effective-R<R>_...``: their composition over the R passes (shown as the square root
      of the weights, so that the far, small ones stay visible);
    * ``<stem>_pam_...`` / ``<stem>_nonlocal_...``: the point's attention row;
    * ``<stem>_{cam,se,eca,cbam}_<module>_channels.png``: bar charts of the top channel weights;
    * ``<stem>_{cbam,coord,gam,simam}_<module>_spatial.png``: spatial gates;
    * ``<stem>_gradcam_<class>.png``: Grad-CAM of a class (default: the class predicted at the first point);
    * ``<stem>_attention.json``: what each file shows, at which feature resolution and pixel.

    Args:
        ckpt: checkpoint (it carries its config).
        image_path: the image.
        out_dir: output folder.
        points: (x, y) pixels of the original image whose attention to draw (default: the centre).
        class_id: Grad-CAM class, index or name.
        config: config overriding the checkpoint's.
        device: default CUDA when available.
        top: channels shown in the bar charts.
        alpha: heatmap opacity.
        cam_layers: Grad-CAM target module names (default: the decode head's last feature layer).
        grad_cam: False to skip Grad-CAM.

    Returns:
        ``{'prediction': [...], 'attention': [...], 'gradcam': [...], 'manifest': [...]}`` paths.

    Raises:
        FileNotFoundError: a missing checkpoint or image.
        ValueError: an unreadable image, a point outside it, an unknown class or layer.
    """
    from seg.apis.inference import Segmenter, read_rgb

    from .overlay import overlay, side_by_side
    from .palette import colorize, get_palette

    if not osp.isfile(image_path):
        raise FileNotFoundError(f'image {image_path!r} does not exist')
    image = read_rgb(image_path)
    if image is None:
        raise ValueError(f'image {image_path!r} is not a readable image')
    ori_h, ori_w = image.shape[:2]
    points = list(points) if points else [(ori_w // 2, ori_h // 2)]
    for x, y in points:
        if not (0 <= x < ori_w and 0 <= y < ori_h):
            raise ValueError(f'point ({x}, {y}) is outside the {ori_w}x{ori_h} (width x height) image {image_path!r}')
    seg = Segmenter(ckpt, config, device, mode='whole')
    model = seg.model
    model_device = next(model.parameters()).device
    x = seg.pipeline(image=image)['image']
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, H', W']
    data = model.data_preprocessor(dict(inputs=[tensor], data_samples=[dict(ori_shape=(ori_h, ori_w))]), False)
    inputs, samples = data['inputs'].to(model_device), data['data_samples']
    geom = _Geometry(ori=(ori_h, ori_w), img=tuple(samples[0]['img_shape']), pad=tuple(inputs.shape[-2:]))

    recorder = AttentionRecorder(model)
    with recorder, torch.no_grad():
        logits = model.forward_logits(inputs)['out']  # [1, K, h, w]
    logits = F.interpolate(logits, size=geom.pad, mode='bilinear', align_corners=model.align_corners)
    pred_pad = logits.argmax(1)[0].cpu().numpy()  # [Hp, Wp]
    pred = cv2.resize(pred_pad[:geom.img[0], :geom.img[1]].astype(np.uint8), (ori_w, ori_h),
                      interpolation=cv2.INTER_NEAREST)  # [H, W]

    os.makedirs(out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(image_path))[0]
    writer = _Writer(out_dir, stem, image, geom, alpha)
    palette = np.asarray(seg.palette, dtype=np.uint8) if seg.palette is not None else get_palette(model.num_classes)
    classes = [str(c) for c in seg.classes]
    result: dict[str, list[str]] = {'prediction': [], 'attention': [], 'gradcam': [], 'manifest': []}
    pred_path = _write_rgb(writer.path('prediction'), side_by_side(image, overlay(image, colorize(pred, palette)),
                                                                   gap=4))
    result['prediction'].append(pred_path)
    writer.manifest.append(dict(file=osp.basename(pred_path), what='image | prediction overlay'))

    if not recorder.modules:
        logger.warning('the model has no supported attention module (criss-cross, PAM, CAM, non-local, '
                       'SE, ECA, CBAM, Coordinate Attention, GAM, SimAM)')
    for name, (kind, module) in recorder.modules.items():
        taps = recorder.records.get(name)
        if not taps:
            continue
        result['attention'] += _draw_module(writer, name, kind, module, taps, points, top)

    if grad_cam:
        px, py = points[0]
        cid = _resolve_class(class_id, classes, int(pred[py, px]))
        layers = _cam_layers(model, cam_layers)
        heat = _grad_cam(model, inputs, cid, pred_pad, layers)
        # Grad-CAM is already at the network input's size: crop the padding, resize to the image.
        heat_img = cv2.resize(np.asarray(heat[:geom.img[0], :geom.img[1]], dtype=np.float32), (ori_w, ori_h),
                              interpolation=cv2.INTER_LINEAR)  # [H, W]
        cname = re.sub(r'[^A-Za-z0-9_-]+', '_', classes[cid])
        path = _write_rgb(writer.path('gradcam', cname), heatmap_overlay(image, heat_img, alpha))
        writer.manifest.append(dict(file=osp.basename(path), what=f'Grad-CAM of class {classes[cid]!r}',
                                    class_id=cid, layers=[n for n, _ in layers]))
        result['gradcam'].append(path)

    manifest = osp.join(out_dir, f'{stem}_attention.json')
    with open(manifest, 'w') as f:
        json.dump(dict(image=image_path, checkpoint=ckpt, size=[ori_h, ori_w], input_size=list(geom.pad),
                       points=[list(p) for p in points], files=writer.manifest), f, indent=2)
    result['manifest'].append(manifest)
    return result
