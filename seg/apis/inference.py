"""Inference on image files and folders: label, colour and overlay PNGs per image."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from seg.fileio import ensure_dir, output_path

from .model_io import model_from_checkpoint

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def list_images(path: str | os.PathLike) -> list[Path]:
    """The image files of a folder (recursively, sorted), or the one file given."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f'input {str(path)!r} is neither an image file nor a folder')
    return sorted(p for p in path.rglob('*') if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: str | os.PathLike) -> np.ndarray | None:
    """RGB uint8 (H, W, 3) as the datasets read it (:func:`seg.datasets.read_image`); None when unreadable."""
    from seg.datasets.base import CorruptFileError, read_image

    try:
        return read_image(os.fspath(path))
    except (CorruptFileError, FileNotFoundError):
        return None


class Segmenter:
    """A trained model with its test pipeline: ``segmenter(image_rgb) -> label map``."""

    def __init__(self, ckpt: str, config: str | None = None, device: str | None = None,
                 mode: str | None = None) -> None:
        from seg.datasets.transforms import build_pipeline

        options = {'model.test_cfg.mode': mode} if mode else None
        self.model, self.cfg, meta = model_from_checkpoint(ckpt, config, options, device)
        self.device = next(self.model.parameters()).device
        dataset_cfg = self.cfg.get('test_dataloader', self.cfg.val_dataloader).dataset
        self.pipeline = build_pipeline(list(dataset_cfg.get('pipeline', [])))
        dataset_meta = meta.get('dataset_meta') or {}
        self.classes = list(dataset_meta.get('classes') or range(self.model.num_classes))
        self.palette = dataset_meta.get('palette')

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> int64 labels (H, W) at the image's size."""
        h, w = image.shape[:2]
        x = self.pipeline(image=image)['image']
        inputs = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, H', W']
        sample = dict(ori_shape=(h, w), img_shape=tuple(x.shape[:2]))
        out = self.model.test_step(dict(inputs=[inputs], data_samples=[sample]))
        return out[0]['pred_sem_seg'].cpu().numpy()


@dataclass
class InferenceSummary:
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def infer_paths(ckpt: str, input_path: str, output_dir: str, config: str | None = None,
                device: str | None = None, mode: str | None = None, alpha: float = 0.5) -> InferenceSummary:
    """Segment every image under ``input_path``; write ``<stem>_label.png`` (class ids),
    ``<stem>_color.png`` and ``<stem>_overlay.png`` into ``output_dir``. Unreadable images are skipped
    with a warning and listed in the summary."""
    from seg.visualization.overlay import overlay
    from seg.visualization.palette import colorize, get_palette

    paths = list_images(input_path)
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {input_path!r}')
    out = ensure_dir(output_dir)
    segmenter = Segmenter(ckpt, config, device, mode)
    palette = (np.asarray(segmenter.palette, dtype=np.uint8) if segmenter.palette is not None
               else get_palette(segmenter.model.num_classes))
    root = Path(input_path) if Path(input_path).is_dir() else Path(input_path).parent
    summary = InferenceSummary()
    for path in tqdm(paths, desc='infer', unit='img', dynamic_ncols=True):
        image = read_rgb(path)
        if image is None:
            logger.warning('skipping %s: not a readable image', path)
            summary.skipped.append(str(path))
            continue
        label = segmenter(image)
        stem = str(path.relative_to(root).with_suffix('')).replace(os.sep, '__')
        color = colorize(label, palette)
        cv2.imwrite(str(output_path(out, f'{stem}_label.png')),
                    label.astype(np.uint8 if label.max() < 256 else np.uint16))
        cv2.imwrite(str(output_path(out, f'{stem}_color.png')), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(output_path(out, f'{stem}_overlay.png')),
                    cv2.cvtColor(overlay(image, color, alpha), cv2.COLOR_RGB2BGR))
        summary.processed.append(str(path))
    return summary
