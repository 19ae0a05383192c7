"""Inference: a checkpoint's model on images, one at a time or over folders, fast.

* :func:`init_model` / :func:`inference_model`: mmsegmentation's two calls -- the segmentor of a
  checkpoint in eval mode (fp32, as trained), and the label map of one image.
* :class:`Predictor` (:mod:`seg.apis.predictor`): the model made fast for inference, or an ONNX
  export in ONNX Runtime, behind one backend interface; images of one size batched.
* :func:`infer_paths`: a folder (or one file) through a :class:`Predictor`: a DataLoader's workers
  decode the images, same-size images are batched, and a thread writes ``<name>_label.png`` (class
  ids), ``<name>_color.png`` and ``<name>_overlay.png``, so the model is never waiting for a file.
  Unreadable files are skipped with a warning and counted.
* :func:`seg.apis.video.infer_video`: a video file or a camera through the same :class:`Predictor`,
  an overlay video out.
"""
from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from seg.datasets.base import CorruptFileError, read_image
from seg.datasets.transforms import build_pipeline
from seg.engine.precision import fast_model
from seg.fileio import ensure_dir, output_path

from .model_io import model_from_checkpoint
from .predictor import Predictor, run_batches, test_pipeline_of

__all__ = ['IMAGE_SUFFIXES', 'InferenceSummary', 'Predictor', 'fast_model', 'infer_paths', 'inference_model',
           'init_model', 'list_images', 'palette_of', 'read_rgb', 'write_label']

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
    try:
        return read_image(os.fspath(path))
    except (CorruptFileError, FileNotFoundError):
        return None


def init_model(ckpt: str, config: str | None = None, device: str = 'cpu') -> nn.Module:
    """The segmentor of ``ckpt`` in eval mode on ``device`` (fp32, exactly as trained).

    ``model(x, mode='tensor')`` gives logits at the input size; ``model.cfg`` is its config and
    ``model.dataset_meta`` the classes and palette the checkpoint carries.
    """
    model, cfg, meta = model_from_checkpoint(ckpt, config, None, device)
    model.cfg = cfg
    model.dataset_meta = dict(meta.get('dataset_meta') or {})
    return model


def inference_model(model: nn.Module, image: str | os.PathLike | np.ndarray) -> np.ndarray:
    """The label map (int64, H x W at the image's size) of one image: a path or an RGB uint8 array.

    Raises:
        ValueError: an unreadable image file.
    """
    if not isinstance(image, np.ndarray):
        path = image
        image = read_rgb(path)
        if image is None:
            raise ValueError(f'cannot read image {os.fspath(path)!r}')
    pipeline = getattr(model, '_test_pipeline', None)
    if pipeline is None:
        pipeline = model._test_pipeline = build_pipeline(test_pipeline_of(model.cfg))
    device = next(model.parameters()).device

    def backend(inputs: torch.Tensor, data_samples: list[dict]) -> list[np.ndarray]:
        with torch.inference_mode():
            return [r['pred_sem_seg'].cpu().numpy() for r in model.predict(inputs.to(device), data_samples)]

    return run_batches(backend, model.data_preprocessor, pipeline, [image])[0]


class _ImageFiles(Dataset):
    """Image files decoded in DataLoader workers; an unreadable one comes back as ``None``."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None]:
        return i, read_rgb(self.paths[i])


def _as_is(item):
    return item


def palette_of(predictor: Predictor) -> np.ndarray:
    """[N, 3] uint8 RGB: the checkpoint's palette, else one generated for its class count."""
    from seg.visualization.palette import get_palette

    return (np.asarray(predictor.palette, dtype=np.uint8) if predictor.palette is not None
            else get_palette(predictor.num_classes))


def write_label(path: str | os.PathLike, label: np.ndarray) -> None:
    """A label map as a PNG of class ids (8-bit, 16-bit from 256 classes on)."""
    cv2.imwrite(os.fspath(path), label.astype(np.uint8 if label.max() < 256 else np.uint16))


def _write(out: Path, stem: str, image: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float) -> None:
    from seg.visualization.overlay import overlay
    from seg.visualization.palette import colorize

    color = colorize(label, palette)
    write_label(output_path(out, f'{stem}_label.png'), label)
    cv2.imwrite(str(output_path(out, f'{stem}_color.png')), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(output_path(out, f'{stem}_overlay.png')), cv2.cvtColor(overlay(image, color, alpha),
                                                                           cv2.COLOR_RGB2BGR))


@dataclass
class InferenceSummary:
    """What a folder inference did: the files processed and skipped, and how fast."""

    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    compile_seconds: float | None = None
    precision: str = ''

    @property
    def images_per_second(self) -> float:
        return len(self.processed) / self.seconds if self.seconds else 0.0


def infer_paths(ckpt: str | None, input_path: str, output_dir: str, config: str | None = None,
                device: str | None = None, mode: str | None = None, alpha: float = 0.5, batch_size: int = 4,
                num_workers: int = 2, precision: str = 'auto', channels_last: bool | str = 'auto',
                fold_bn: bool = True, compile: bool = False, onnx: str | None = None,
                progress: bool = True) -> InferenceSummary:
    """Segment every image under ``input_path``; write ``<stem>_label.png`` (class ids),
    ``<stem>_color.png`` and ``<stem>_overlay.png`` into ``output_dir`` (``<stem>``: the path below
    ``input_path`` with ``/`` as ``__``).

    Args: see :class:`Predictor`; ``batch_size`` images of one size go through the model at once,
        ``num_workers`` DataLoader workers decode the files (0: the main process).

    Raises:
        FileNotFoundError: no such input, or no image in it.
        NotADirectoryError: ``output_dir`` (or a parent) is a file.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f'batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}')
    paths = list_images(input_path)
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {input_path!r}')
    out = ensure_dir(output_dir)
    predictor = Predictor(ckpt, config, device, mode, precision, channels_last, fold_bn, compile, onnx)
    palette = palette_of(predictor)
    root = Path(input_path) if Path(input_path).is_dir() else Path(input_path).parent
    stems = [str(p.relative_to(root).with_suffix('')).replace(os.sep, '__') for p in paths]
    loader = DataLoader(_ImageFiles(paths), batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                        prefetch_factor=2 * batch_size if num_workers else None)
    summary = InferenceSummary(precision=predictor.precision.describe() if predictor.precision else 'onnxruntime')
    pending: dict[tuple, list[tuple[int, np.ndarray]]] = defaultdict(list)
    writes: list[Future] = []
    start = time.perf_counter()

    def flush(key: tuple, writer: ThreadPoolExecutor) -> None:
        batch = pending.pop(key)
        labels = predictor([image for _, image in batch])
        for (i, image), label in zip(batch, labels):
            writes.append(writer.submit(_write, out, stems[i], image, label, palette, alpha))
            summary.processed.append(str(paths[i]))
        while len(writes) > 4 * batch_size:  # bound what waits for the writer: memory stays flat
            writes.pop(0).result()

    with ThreadPoolExecutor(max_workers=1) as writer:
        for i, image in tqdm(loader, total=len(paths), desc='infer', unit='img', dynamic_ncols=True,
                             disable=not progress):
            if image is None:
                logger.warning('skipping %s: not a readable image', paths[i])
                summary.skipped.append(str(paths[i]))
                continue
            key = image.shape
            pending[key].append((i, image))
            if len(pending[key]) >= batch_size:
                flush(key, writer)
        for key in list(pending):
            flush(key, writer)
        for f in writes:
            f.result()
    summary.seconds = time.perf_counter() - start
    summary.compile_seconds = predictor.compile_seconds
    return summary
