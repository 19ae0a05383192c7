"""Drawing a checkpoint's attention for one image: load, run with hooks, write the pictures."""
from __future__ import annotations

import json
import os.path as osp
import re
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from seg.datasets.transforms import build_pipeline
from seg.fileio import ensure_dir, output_path
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

from .inference import init_model, read_rgb
from .predictor import test_pipeline_of

__all__ = ['parse_point', 'visualize_attention']


def parse_point(text: str) -> tuple[int, int]:
    """``'x,y'`` -> ``(x, y)`` pixel coordinates of the original image.

    Raises:
        ValueError: if the text is not two integers separated by a comma.
    """
    m = re.fullmatch(r'\s*(-?\d+)\s*,\s*(-?\d+)\s*', str(text))
    if not m:
        raise ValueError(f'a point must be given as x,y (two integers), got {text!r}')
    return int(m.group(1)), int(m.group(2))


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


def visualize_attention(ckpt: str, image_path: str, out_dir: str, points: Sequence[tuple[int, int]] | None = None,
                        class_id: int | str | None = None, config: str | None = None, device: str | None = None,
                        top: int = 20, alpha: float = 0.55, layers: Sequence[str] | None = None,
                        with_grad_cam: bool = True) -> dict[str, list[str]]:
    """Write the attention maps of a checkpoint's model for one image.

    Files (``<stem>`` = the image's file stem), for whichever attention modules the model contains
    (every module of the zoo declares its maps; see :func:`seg.visualization.attention.draw_attention`):

    * ``<stem>_prediction.png``: the image beside the prediction overlay;
    * ``<stem>_<type>_<module>_{channels,branches,spatial}.png``: gate weights;
    * ``<stem>_<type>_<module>_<map>_x<X>_y<Y>.png``: what a point draws from (criss-cross passes and
      their composition over the R passes, PAM and non-local rows);
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
        layers: Grad-CAM target module names (default: the decode head's last feature layer).
        with_grad_cam: False to skip Grad-CAM.

    Returns:
        ``{'prediction': [...], 'attention': [...], 'gradcam': [...], 'manifest': [...]}`` paths.

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
    device = next(model.parameters()).device
    x = build_pipeline(test_pipeline_of(model.cfg))(image=image)['image']
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, H', W']
    data = model.data_preprocessor(dict(inputs=[tensor], data_samples=[dict(ori_shape=(ori_h, ori_w))]), False)
    inputs, samples = data['inputs'].to(device), data['data_samples']
    geom = Geometry(ori=(ori_h, ori_w), img=tuple(samples[0]['img_shape']), pad=tuple(inputs.shape[-2:]))

    recorder = AttentionRecorder(model)
    with recorder, torch.no_grad():
        logits = model.forward_logits(inputs)['out']  # [1, K, h, w]
    logits = F.interpolate(logits, size=geom.pad, mode='bilinear', align_corners=model.align_corners)
    pred_pad = logits.argmax(1)[0].cpu().numpy()  # [Hp, Wp]
    pred = cv2.resize(pred_pad[:geom.img[0], :geom.img[1]].astype(np.uint8), (ori_w, ori_h),
                      interpolation=cv2.INTER_NEAREST)  # [H, W]

    stem = osp.splitext(osp.basename(image_path))[0]
    meta = model.dataset_meta
    palette = np.asarray(meta['palette'], dtype=np.uint8) if meta.get('palette') else get_palette(model.num_classes)
    classes = [str(c) for c in (meta.get('classes') or range(model.num_classes))]
    result: dict[str, list[str]] = {'prediction': [], 'attention': [], 'gradcam': [], 'manifest': []}
    pred_path = write_rgb(str(output_path(out_dir, f'{stem}_prediction.png')),
                          side_by_side(image, overlay(image, colorize(pred, palette)), gap=4))
    result['prediction'].append(pred_path)
    manifest = [dict(file=osp.basename(pred_path), what='image | prediction overlay')]

    if not recorder.modules:
        print('the model has no attention module (seg.models.attention) to draw')
    paths, entries = draw_attention(recorder, image, geom, points, out_dir, stem, alpha, top)
    result['attention'] += paths
    manifest += entries

    if with_grad_cam:
        px, py = points[0]
        cid = _resolve_class(class_id, classes, int(pred[py, px]))
        targets = cam_layers(model, layers)
        heat = grad_cam(model, inputs, cid, pred_pad, targets)
        # Grad-CAM is at the network input's size: crop the padding, resize to the image.
        heat_img = cv2.resize(np.asarray(heat[:geom.img[0], :geom.img[1]], dtype=np.float32), (ori_w, ori_h),
                              interpolation=cv2.INTER_LINEAR)  # [H, W]
        cname = re.sub(r'[^A-Za-z0-9_-]+', '_', classes[cid])
        path = write_rgb(str(output_path(out_dir, f'{stem}_gradcam_{cname}.png')), heatmap_overlay(image, heat_img, alpha))
        manifest.append(dict(file=osp.basename(path), what=f'Grad-CAM of class {classes[cid]!r}', class_id=cid,
                             layers=[n for n, _ in targets]))
        result['gradcam'].append(path)

    manifest_path = str(output_path(out_dir, f'{stem}_attention.json'))
    with open(manifest_path, 'w') as f:
        json.dump(dict(image=image_path, checkpoint=ckpt, size=[ori_h, ori_w], input_size=list(geom.pad),
                       points=[list(p) for p in points], files=manifest), f, indent=2)
    result['manifest'].append(manifest_path)
    return result
