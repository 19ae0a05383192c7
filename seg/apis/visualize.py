"""Drawing a checkpoint's attention for one image: load, run with hooks once, write the pictures.

:func:`record_image` is the one pass both the static figures (:func:`visualize_attention`) and the
explorer (:mod:`seg.apis.explore`) make: the test pipeline, the forward with the attention hooks, the
prediction; every map of a point is then recomputed from its records.
"""
from __future__ import annotations

import json
import os.path as osp
import re
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from seg.datasets.transforms import build_pipeline
from seg.fileio import ensure_dir, output_path
from seg.models.segmentor import predictions
from seg.visualization.attention import (
    AttentionRecorder,
    Geometry,
    cam_layers,
    draw_attention,
    grad_cam,
    heatmap_overlay,
    write_rgb,
)
from seg.visualization.overlay import overlay, side_by_side
from seg.visualization.palette import colorize, get_palette
from seg.visualization.panels import attention_panels, image_panel, map_panel, panel_figure, prediction_panel

from .inference import init_model, read_rgb
from .predictor import test_pipeline_of

__all__ = ['Recorded', 'class_names_and_palette', 'parse_point', 'record_image', 'resolve_class',
           'visualize_attention']


def parse_point(text: str) -> tuple[int, int]:
    """``'x,y'`` -> ``(x, y)`` pixel coordinates of the original image.

    Raises:
        ValueError: if the text is not two integers separated by a comma.
    """
    m = re.fullmatch(r'\s*(-?\d+)\s*,\s*(-?\d+)\s*', str(text))
    if not m:
        raise ValueError(f'a point must be given as x,y (two integers), got {text!r}')
    return int(m.group(1)), int(m.group(2))


def resolve_class(class_id: int | str | None, classes: list[str], default: int) -> int:
    """A class given by index or name (``default`` when None) as its index.

    Raises:
        ValueError: an unknown name or an index out of range (the classes are listed).
    """
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


def class_names_and_palette(model: nn.Module) -> tuple[list[str], np.ndarray]:
    """The class names and palette ([K, 3] uint8) the checkpoint carries, else indices and a generated one."""
    meta = getattr(model, 'dataset_meta', None) or {}
    palette = np.asarray(meta['palette'], dtype=np.uint8) if meta.get('palette') else get_palette(model.num_classes)
    classes = [str(c) for c in (meta.get('classes') or range(model.num_classes))]
    return classes, palette


@dataclass
class Recorded:
    """One image through one model, with the attention modules' records.

    Attributes:
        image: [H, W, 3] uint8 RGB, the original.
        inputs: [1, 3, Hp, Wp] the network input (a leaf requiring grad when the graph is kept).
        geom: image / input sizes.
        modules: ``{name: AttentionModule}`` recorded.
        records: ``{name: {declared name: [tensor per call]}}``.
        logits: [1, K, Hp, Wp] at the input size (with the autograd graph when kept).
        pred_pad: [Hp, Wp] int64 labels of the input.
        pred: [H, W] int64 labels of the original image (the segmentor's one rule, ``predictions``).
    """

    image: np.ndarray
    inputs: Tensor
    geom: Geometry
    modules: dict
    records: dict
    logits: Tensor
    pred_pad: np.ndarray
    pred: np.ndarray


def record_image(model: nn.Module, image: np.ndarray, keep_graph: bool = False) -> Recorded:
    """Run ``model`` (in eval mode) once on an RGB image with hooks on every attention module.

    ``keep_graph`` keeps the autograd graph from the input to the logits, so that the input gradient of
    any output pixel (its effective receptive field) costs one backward pass, no forward.
    """
    ori_h, ori_w = image.shape[:2]
    device = next(model.parameters()).device
    x = build_pipeline(test_pipeline_of(model.cfg))(image=image)['image']
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, H', W']
    data = model.data_preprocessor(dict(inputs=[tensor], data_samples=[dict(ori_shape=(ori_h, ori_w))]), False)
    inputs, samples = data['inputs'].to(device), data['data_samples']
    geom = Geometry(ori=(ori_h, ori_w), img=tuple(samples[0]['img_shape']), pad=tuple(inputs.shape[-2:]))
    if keep_graph:
        inputs = inputs.detach().clone().requires_grad_(True)
    recorder = AttentionRecorder(model)
    with recorder, torch.inference_mode(False), torch.set_grad_enabled(keep_graph):
        logits = model(inputs, mode='tensor')  # [1, K, Hp, Wp]
    pred_pad = logits.detach().argmax(1)[0].cpu().numpy()  # [Hp, Wp]
    sample = dict(img_shape=geom.img, ori_shape=geom.ori)
    pred = predictions(logits.detach(), [sample], model.align_corners)[0]['pred_sem_seg'].cpu().numpy()  # [H, W]
    return Recorded(image, inputs, geom, recorder.modules, {k: dict(v) for k, v in recorder.records.items()},
                    logits, pred_pad, pred)


def grad_cam_map(model: nn.Module, rec: Recorded, class_id: int, layers) -> np.ndarray:
    """Grad-CAM of ``class_id`` over the pixels predicted as it: [Hp, Wp] in [0, 1] over the padded input."""
    return np.asarray(grad_cam(model, rec.inputs.detach(), class_id, rec.pred_pad, layers), dtype=np.float32)


def visualize_attention(ckpt: str, image_path: str, out_dir: str, points: Sequence[tuple[int, int]] | None = None,
                        class_id: int | str | None = None, config: str | None = None, device: str | None = None,
                        top: int = 20, alpha: float = 0.55, layers: Sequence[str] | None = None,
                        with_grad_cam: bool = True, single: bool = False) -> dict[str, list[str]]:
    """Draw what a checkpoint's attention modules look at, for one image.

    Files (``<stem>`` = the image's file stem), for whichever attention modules the model contains
    (every module of the zoo declares its maps):

    * ``<stem>_x<X>_y<Y>_panels.png``, one figure per point (:mod:`seg.visualization.panels`): the input
      with the point marked, the prediction with its legend, each map of the point (criss-cross passes and
      their composition over the R passes, PAM and non-local rows), the gates (spatial maps, channel and
      branch weights as bars) and Grad-CAM; each panel titled with its module, map, point and scale, with
      a colour bar, at least 768 px wide, attention cells nearest-neighbour;
    * with ``single``, instead, one file per map as before, for scripts
      (:func:`seg.visualization.attention.draw_attention`): ``<stem>_<type>_<module>_<map>[_x<X>_y<Y>].png``,
      ``<stem>_gradcam_<class>.png``;
    * ``<stem>_prediction.png``: the image beside the prediction overlay;
    * ``<stem>_attention.json``: what each file (and each panel) shows, at which feature resolution and pixel.

    Args:
        ckpt: checkpoint (it carries its config).
        image_path: the image.
        out_dir: output folder.
        points: (x, y) pixels of the original image whose attention to draw (default: the centre).
        class_id: Grad-CAM class, index or name (default: the class predicted at each point; with
            ``single``, at the first point).
        config: config overriding the checkpoint's.
        device: default CUDA when available.
        top: channels shown in the bar charts.
        alpha: heatmap opacity (single maps).
        layers: Grad-CAM target module names (default: the decode head's last feature layer).
        with_grad_cam: False to skip Grad-CAM.
        single: one file per map instead of one panel figure per point.

    Returns:
        ``{'prediction': [...], 'panels': [...], 'attention': [...], 'gradcam': [...], 'manifest': [...]}``
        paths (``panels`` without ``single``; ``attention`` and ``gradcam`` with it).

    Raises:
        FileNotFoundError: a missing checkpoint or image.
        ValueError: an unreadable image, a point outside it, an unknown class or layer.
    """
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
    ensure_dir(out_dir)
    model = init_model(ckpt, config, device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    model.test_cfg['mode'] = 'whole'
    rec = record_image(model, image)
    geom, pred = rec.geom, rec.pred

    stem = osp.splitext(osp.basename(image_path))[0]
    classes, palette = class_names_and_palette(model)
    result: dict[str, list[str]] = {'prediction': [], 'panels': [], 'attention': [], 'gradcam': [], 'manifest': []}
    pred_path = write_rgb(str(output_path(out_dir, f'{stem}_prediction.png')),
                          side_by_side(image, overlay(image, colorize(pred, palette)), gap=4))
    result['prediction'].append(pred_path)
    manifest = [dict(file=osp.basename(pred_path), what='image | prediction overlay')]
    if not rec.modules:
        print('the model has no attention module (seg.models.attention) to draw')
    targets = cam_layers(model, layers) if with_grad_cam else []
    cams: dict[int, np.ndarray] = {}

    def cam_of(cid: int) -> np.ndarray:
        if cid not in cams:
            cams[cid] = grad_cam_map(model, rec, cid, targets)
        return cams[cid]

    if single:
        recorder = AttentionRecorder(model)
        recorder.records.update(rec.records)
        paths, entries = draw_attention(recorder, image, geom, points, out_dir, stem, alpha, top)
        result['attention'] += paths
        manifest += entries
        if with_grad_cam:
            px, py = points[0]
            cid = resolve_class(class_id, classes, int(pred[py, px]))
            heat = cam_of(cid)
            # Grad-CAM is at the network input's size: crop the padding, resize to the image.
            heat_img = cv2.resize(heat[:geom.img[0], :geom.img[1]], (ori_w, ori_h), interpolation=cv2.INTER_LINEAR)
            cname = re.sub(r'[^A-Za-z0-9_-]+', '_', classes[cid])
            path = write_rgb(str(output_path(out_dir, f'{stem}_gradcam_{cname}.png')),
                             heatmap_overlay(image, heat_img, alpha))
            manifest.append(dict(file=osp.basename(path), what=f'Grad-CAM of class {classes[cid]!r}', class_id=cid,
                                 layers=[n for n, _ in targets]))
            result['gradcam'].append(path)
    else:
        for x, y in points:
            panels = [image_panel(image, f'input {osp.basename(image_path)} ({ori_w}x{ori_h}) | point ({x}, {y})',
                                  (x, y)),
                      prediction_panel(image, pred, palette, classes, (x, y)),
                      *attention_panels(rec.modules, rec.records, geom, image, (x, y), top=top)]
            if with_grad_cam:
                cid = resolve_class(class_id, classes, int(pred[y, x]))
                panels.append(map_panel(image, cam_of(cid), geom.cover(),
                                        f'Grad-CAM of class {classes[cid]!r} | point ({x}, {y})\n'
                                        f'{", ".join(n for n, _ in targets)}, over the pixels predicted as it',
                                        (x, y), smooth=True, label='Grad-CAM',
                                        info=dict(what='Grad-CAM', class_id=cid, layers=[n for n, _ in targets])))
            path = panel_figure(panels, output_path(out_dir, f'{stem}_x{x}_y{y}_panels.png'), columns=2,
                                title=f'{osp.basename(ckpt)} on {osp.basename(image_path)}: point ({x}, {y})')
            result['panels'].append(path)
            manifest.append(dict(file=osp.basename(path), point=[x, y],
                                 panels=[dict(p.info, title=p.title) for p in panels]))

    manifest_path = str(output_path(out_dir, f'{stem}_attention.json'))
    with open(manifest_path, 'w') as f:
        json.dump(dict(image=image_path, checkpoint=ckpt, size=[ori_h, ori_w], input_size=list(geom.pad),
                       points=[list(p) for p in points], files=manifest), f, indent=2)
    result['manifest'].append(manifest_path)
    return result
