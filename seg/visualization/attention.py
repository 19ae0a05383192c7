"""What the attention modules of a model look at, drawn over the input image.

Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization (Selvaraju et al.,
ICCV 2017), https://arxiv.org/abs/1610.02391 -- class evidence, with the ``grad-cam`` package.

This module takes models, arrays and records; it loads nothing (``seg.apis.visualize`` does).
:class:`AttentionRecorder` puts forward hooks on every :class:`seg.models.attention.AttentionModule`
of a model, on the submodules each declares in ``attention_maps``; the module's own
:meth:`~seg.models.attention.AttentionModule.maps` turns the records into pictures (through the
weight functions of :mod:`seg.ops`, for the context modules); :func:`draw_attention` writes them:
bar charts for channel and branch weights, heatmaps for spatial maps and for the maps of a point.
Maps are upsampled (nearest neighbour, so the feature cells stay visible) to the image only for
display.
"""
from __future__ import annotations

import logging
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from seg.fileio import output_path
from seg.models.attention import AttentionModule
from seg.registry import ATTENTION

from .plots import branch_bar_chart, channel_bar_chart

__all__ = ['AttentionRecorder', 'Geometry', 'cam_layers', 'draw_attention', 'grad_cam', 'heatmap_overlay',
           'registered_name']

logger = logging.getLogger(__name__)


def registered_name(module: nn.Module) -> str:
    """The name a module class is registered under in ``ATTENTION`` (its class name otherwise)."""
    for name, cls in ATTENTION.module_dict.items():
        if type(module) is cls:
            return name
    return type(module).__name__.lower()


class AttentionRecorder:
    """Forward hooks on every attention module of a model, recording what its declarations name.

    Use as a context manager; the hooks are removed on exit.

    Attributes:
        modules: ``{module name: module}`` of the attention modules found.
        records: ``{module name: {declared name: [tensor per call]}}`` (detached, float, on the CPU);
            ``''`` holds the module's input.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules: dict[str, AttentionModule] = {
            name: m for name, m in model.named_modules() if isinstance(m, AttentionModule) and m.attention_maps}
        self.records: dict[str, dict[str, list[Tensor]]] = defaultdict(lambda: defaultdict(list))
        self._handles: list = []

    def _hook(self, name: str, tap: str):
        def fn(module, inputs, output):
            value = inputs[0] if tap == '' else output
            self.records[name][tap].append(value.detach().float().cpu())
        return fn

    def __enter__(self) -> AttentionRecorder:
        for name, module in self.modules.items():
            for tap in module.attention_maps:
                try:
                    target = module if tap == '' else module.get_submodule(tap)
                except AttributeError:  # an optional branch this instance does not have
                    continue
                self._handles.append(target.register_forward_hook(self._hook(name, tap)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass
class Geometry:
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

    def cover(self) -> tuple[float, float]:
        """(H, W), in pixels of the original image, that a map over the padded input covers from the
        image's top-left corner (more than the image where the input was padded)."""
        return self.pad[0] * self.ori[0] / self.img[0], self.pad[1] * self.ori[1] / self.img[1]

    def to_input(self, x: int, y: int) -> tuple[int, int]:
        """Original pixel (x, y) -> (row, col) of the padded network input."""
        return (min(self.pad[0] - 1, max(0, int((y + 0.5) * self.img[0] / self.ori[0]))),
                min(self.pad[1] - 1, max(0, int((x + 0.5) * self.img[1] / self.ori[1]))))

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


def write_rgb(path: str, rgb: np.ndarray) -> str:
    """Write an RGB image as PNG; ``OSError`` naming the file if OpenCV cannot."""
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path!r}')
    return path


@dataclass
class _Writer:
    out_dir: str
    stem: str
    image: np.ndarray
    geom: Geometry
    alpha: float
    manifest: list[dict] = field(default_factory=list)

    def path(self, *parts: str) -> str:
        return str(output_path(self.out_dir, '_'.join(p for p in (self.stem, *parts) if p) + '.png'))

    def heat(self, fmap: Tensor, point: tuple[int, int] | None, info: dict, *parts: str, power: float = 1.0) -> str:
        """Write a feature-resolution map over the image; ``power`` < 1 lifts small values for display."""
        arr = fmap.detach().float().cpu().numpy()  # [h, w]
        shown = np.power(np.clip(arr, 0.0, None), power) if power != 1.0 else arr
        path = write_rgb(self.path(*parts), heatmap_overlay(self.image, self.geom.to_image(shown), self.alpha, point))
        self.manifest.append(dict(info, file=osp.basename(path), resolution=list(arr.shape),
                                  min=float(arr.min()), max=float(arr.max()),
                                  display='linear' if power == 1.0 else f'weights ** {power:g}'))
        return path


def draw_attention(recorder: AttentionRecorder, image: np.ndarray, geom: Geometry, points: Sequence[tuple[int, int]],
                   out_dir: str, stem: str, alpha: float = 0.55, top: int = 20) -> tuple[list[str], list[dict]]:
    """Write the maps of every recorded module.

    Files: ``<stem>_<module type>_<module path>_<map>.png``: ``..._channels`` / ``..._branches`` bar
    charts, ``..._spatial`` heatmaps, and per point ``..._<map>_x<X>_y<Y>`` heatmaps of what that
    point draws from (criss-cross passes and their composition, PAM and non-local rows).

    Returns:
        ``(paths written, manifest entries saying what each file shows)``.
    """
    writer = _Writer(out_dir, stem, image, geom, alpha)
    paths: list[str] = []
    for name, module in recorder.modules.items():
        records = recorder.records.get(name)
        if not records:
            continue
        kind, tag = registered_name(module), name.replace('.', '-') or 'model'
        for key, amap in module.maps(records).items():
            base = dict(module=name, kind=kind, what=amap.what)
            if amap.kind == 'channel':
                path = channel_bar_chart(amap.values.numpy(), writer.path(kind, tag, key), top=top,
                                         title=f'{name}: {amap.what}')
            elif amap.kind == 'branch':
                path = branch_bar_chart(amap.values.numpy(), writer.path(kind, tag, key), top=top,
                                        title=f'{name}: {amap.what}')
            elif amap.kind == 'spatial':
                paths.append(writer.heat(amap.values, None, base, kind, tag, key, power=amap.power))
                continue
            else:
                continue
            writer.manifest.append(dict(base, file=osp.basename(path), shape=list(amap.values.shape)))
            paths.append(path)
        for x, y in points:
            pixel: list[int] = []

            def locate(h: int, w: int, x=x, y=y, pixel=pixel) -> tuple[int, int]:
                pixel[:] = geom.to_feature(x, y, (h, w))
                return pixel[0], pixel[1]

            for key, amap in module.maps(records, locate).items():
                if amap.kind != 'point':
                    continue
                info = dict(module=name, kind=kind, what=amap.what, point=[x, y], feature_pixel=list(pixel))
                paths.append(writer.heat(amap.values, (x, y), info, kind, tag, key, f'x{x}', f'y{y}', power=amap.power))
    return paths, writer.manifest


# --------------------------------------------------------------------------------------- Grad-CAM
def cam_layers(model: nn.Module, names: Sequence[str] | None = None) -> list[tuple[str, nn.Module]]:
    """Grad-CAM target layers: the names given, else the decode head's last feature layer(s).

    Raises:
        ValueError: a name that is not a module of the model (some valid ones are listed).
    """
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


def grad_cam(model: nn.Module, inputs: Tensor, class_id: int, pred: np.ndarray,
             layers: list[tuple[str, nn.Module]]) -> np.ndarray:
    """Grad-CAM of ``class_id`` over the pixels predicted as it (all pixels if none): [Hp, Wp] in [0, 1]."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    mask = (pred == class_id).astype(np.float32)
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
