"""Base class of the segmentation datasets: file pairing, loading, checks, pipeline, sample contract.

A sample is::

    dict(inputs=<uint8 tensor [3, H, W], RGB>,
         data_samples=dict(gt_sem_seg=<int64 tensor [H, W]>,   # absent without masks
                           img_path=str, seg_map_path=str | None,
                           ori_shape=(H0, W0),                 # image file size
                           img_shape=(H, W)))                  # size after the pipeline

In train mode the albumentations pipeline transforms image and mask together; in test mode it
transforms the image only and ``gt_sem_seg`` keeps the size of the mask file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from seg.fileio import output_path
from seg.worker_reports import note_reading

from .palette import generate_palette
from .transforms import build_pipeline, reseed_pipeline

logger = logging.getLogger(__name__)

__all__ = ['BaseSegDataset', 'CorruptFileError', 'read_image']


class CorruptFileError(ValueError):
    """A file that exists but cannot be decoded (empty, truncated, not an image)."""


def _decode(path: str, what: str, flags: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode an image file with OpenCV (``np.fromfile`` + ``imdecode`` also handles non-ASCII paths).

    Returns:
        ``(array, raw bytes)``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} file {path} does not exist')
    note_reading(path)
    buf = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(buf, flags) if buf.size else None
    if array is None:
        raise CorruptFileError(f'cannot read {what} file {path}: empty, truncated, or not an image format '
                               f'OpenCV can decode')
    return array, buf


def read_image(path: str) -> np.ndarray:
    """Read an image file as ``uint8`` ``[H, W, 3]`` RGB, the one image reader of ``seg``.

    Grey images are repeated to three channels, an alpha channel is dropped, palette images are
    expanded to their colours, 16-bit images are scaled to 8 bits (``value >> 8``).

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: the file cannot be decoded.
    """
    array, _ = _decode(path, 'image', cv2.IMREAD_COLOR)
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def _is_palette_png(buf: np.ndarray) -> bool:
    """Whether raw PNG bytes hold an indexed-colour (palette) image: IHDR colour type 3."""
    return buf.size > 25 and bytes(buf[:8]) == b'\x89PNG\r\n\x1a\n' and int(buf[25]) == 3


def _palette_indices(buf: np.ndarray, path: str) -> np.ndarray:
    """The palette indices of a palette PNG (what VOC-style masks store as labels)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as img:
            return np.asarray(img)
    except Exception as exc:  # noqa: BLE001 - name the file
        raise CorruptFileError(f'cannot read the palette indices of mask file {path}: {exc}') from exc


def _scan(root: str, suffix: str) -> list[str]:
    """Paths under ``root`` (recursive, relative, '/'-separated, sorted) ending in ``suffix``, suffix cut."""
    found = []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.endswith(suffix) and len(name) > len(suffix):
                rel = name if rel_dir == '.' else f'{rel_dir}/{name}'
                found.append(rel[:-len(suffix)].replace(os.sep, '/'))
    return sorted(found)


def skipped_sample(path: str, error: str) -> dict[str, str]:
    """What an evaluation dataset returns for an unreadable file under ``on_bad_file='skip'``."""
    return {'skipped': path, 'error': error}


class BaseSegDataset(Dataset):
    """Pairs ``img_dir/<stem><img_suffix>`` with ``ann_dir/<stem><seg_map_suffix>`` (recursively).

    Subclasses fix the layout and the class list (``METAINFO``) and register themselves in
    ``DATASETS``; the constructor takes explicit keywords only.

    Args:
        data_root: Dataset root; ``img_dir`` and ``ann_dir`` are relative to it.
        img_dir: Image directory.
        ann_dir: Mask directory, ``None`` for images without masks.
        img_suffix: File-name ending that marks an image (e.g. ``'.jpg'``, ``'_leftImg8bit.png'``).
        seg_map_suffix: Ending of the mask that replaces ``img_suffix``.
        pipeline: Transform configs for :func:`seg.datasets.transforms.build_pipeline`.
        test_mode: Transform the image only and keep masks at their file size.
        ignore_index: Label of pixels that count for no class; must not be a class index.
        reduce_zero_label: Map label 0 to ``ignore_index`` and every other label ``l`` to ``l - 1``
            (labels equal to ``ignore_index`` stay ignored).
        classes: Class names; defaults to ``METAINFO['classes']``.
        palette: One RGB triple per class; defaults to ``METAINFO['palette']`` or a generated one.
        on_bad_file: What an undecodable (truncated, corrupt, empty) image or mask does when a sample
            is read: ``'stop'`` raises the error naming the file; ``'skip'`` logs a warning with the
            running count and, in training, reads the next sample instead; in ``test_mode`` nothing
            replaces it: the sample is :func:`skipped_sample` (collated into the batch's ``skipped``
            list), so the metric leaves the file out and names it.

    Raises:
        FileNotFoundError: ``data_root``, ``img_dir`` or ``ann_dir`` is missing, no image ends with
            ``img_suffix``, or an image has no mask.
        ValueError: Bad class list, palette or ``ignore_index``.
    """

    METAINFO: ClassVar[dict[str, Any]] = {'classes': (), 'palette': []}

    def __init__(self, *, data_root: str, img_dir: str, ann_dir: str | None, img_suffix: str,
                 seg_map_suffix: str, pipeline: Sequence[dict] | None = None, test_mode: bool = False,
                 ignore_index: int = 255, reduce_zero_label: bool = False,
                 classes: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None, on_bad_file: str = 'stop'):
        if on_bad_file not in ('stop', 'skip'):
            raise ValueError(f"on_bad_file must be 'stop' or 'skip', got {on_bad_file!r}")
        self.on_bad_file = on_bad_file
        self.skipped = 0
        self.data_root = str(data_root)
        self.img_dir = os.path.join(self.data_root, img_dir)
        self.ann_dir = None if ann_dir is None else os.path.join(self.data_root, ann_dir)
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.test_mode = bool(test_mode)
        self.reduce_zero_label = bool(reduce_zero_label)
        self._set_metainfo(classes, palette, ignore_index)
        self.pipeline = build_pipeline(pipeline)
        self._pipeline_seed_key: tuple[int, int] | None = None
        self.data_list: list[tuple[str, str | None]] = self.load_data_list()

    # ------------------------------------------------------------------ metainfo
    def _set_metainfo(self, classes: Sequence[str] | None, palette: Sequence[Sequence[int]] | None,
                      ignore_index: int) -> None:
        classes = self.METAINFO['classes'] if classes is None else classes
        if (isinstance(classes, str) or not isinstance(classes, Sequence) or not classes
                or not all(isinstance(c, str) for c in classes)):
            raise ValueError(f'classes must be a non-empty list of class names, got {classes!r}')
        if len(set(classes)) != len(classes):
            raise ValueError(f'classes must be unique, got {list(classes)!r}')
        if palette is None:
            default = self.METAINFO.get('palette') or []
            palette = default if len(default) == len(classes) else generate_palette(len(classes)).tolist()
        if (len(palette) != len(classes)
                or not all(isinstance(c, Sequence) and len(c) == 3 and all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in c)
                           for c in palette)):
            raise ValueError(f'palette must hold one (r, g, b) triple of ints in 0..255 per class '
                             f'({len(classes)} classes), got {palette!r}')
        if (isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))
                or not len(classes) <= ignore_index <= 65535):
            raise ValueError(f'ignore_index must be an int in [num_classes={len(classes)}, 65535] so that it '
                             f'is no class index, got {ignore_index!r}')
        self.classes = tuple(classes)
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.ignore_index = int(ignore_index)
        # The label dtype that holds every valid label (classes and ignore_index).
        self._label_dtype = np.uint8 if max(len(classes) - 1, self.ignore_index) <= 255 else np.uint16

    @property
    def metainfo(self) -> dict[str, Any]:
        """``classes``, ``palette``, ``ignore_index``, ``reduce_zero_label`` (a fresh copy)."""
        return {'classes': self.classes, 'palette': list(self.palette), 'ignore_index': self.ignore_index,
                'reduce_zero_label': self.reduce_zero_label}

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    # ------------------------------------------------------------------ file list
    def load_data_list(self) -> list[tuple[str, str | None]]:
        """Pair every image with its mask.

        Returns:
            Sorted ``(img_path, seg_map_path or None)`` pairs.
        """
        if not os.path.isdir(self.data_root):
            raise FileNotFoundError(f'data_root {self.data_root} does not exist or is not a directory')
        if not os.path.isdir(self.img_dir):
            raise FileNotFoundError(f'image directory {self.img_dir} does not exist')
        stems = _scan(self.img_dir, self.img_suffix)
        if not stems:
            others = sorted({os.path.splitext(n)[1] for _, _, names in os.walk(self.img_dir) for n in names})
            seen = f'; file endings present: {", ".join(others)}' if others else '; the directory is empty'
            raise FileNotFoundError(f'no images ending in {self.img_suffix!r} found under {self.img_dir}{seen}')
        img_paths = [os.path.join(self.img_dir, s + self.img_suffix) for s in stems]
        if self.ann_dir is None:
            return [(p, None) for p in img_paths]
        if not os.path.isdir(self.ann_dir):
            raise FileNotFoundError(f'mask directory {self.ann_dir} does not exist{self.missing_mask_hint()}')
        masks = set(_scan(self.ann_dir, self.seg_map_suffix))
        missing = [s for s in stems if s not in masks]
        if missing:
            examples = ', '.join(os.path.join(self.ann_dir, s + self.seg_map_suffix) for s in missing[:3])
            raise FileNotFoundError(
                f'{len(missing)} of {len(stems)} images under {self.img_dir} have no mask ending in '
                f'{self.seg_map_suffix!r} under {self.ann_dir}; missing e.g. {examples}{self.missing_mask_hint()}')
        orphans = sorted(masks - set(stems))
        if orphans:
            logger.warning('%d mask(s) under %s have no image ending in %r under %s and are not used, e.g. %s',
                           len(orphans), self.ann_dir, self.img_suffix, self.img_dir,
                           ', '.join(os.path.join(self.ann_dir, s + self.seg_map_suffix) for s in orphans[:3]))
        return [(p, os.path.join(self.ann_dir, s + self.seg_map_suffix)) for p, s in zip(img_paths, stems)]

    def write_result(self, pred: np.ndarray, img_path: str, out_dir: str) -> str:
        """Write the results file of a prediction (``--format-only``), as the dataset's benchmark expects:
        class indices in ``<stem>.png`` (plus 1 when the dataset reduces the zero label, as ADE20K's
        server expects). Returns its path."""
        labels = pred + 1 if self.reduce_zero_label else pred
        path = str(output_path(out_dir, os.path.splitext(os.path.basename(img_path))[0] + '.png'))
        if not cv2.imwrite(path, labels.astype(np.uint8 if labels.max() < 256 else np.uint16)):
            raise OSError(f'could not write {path!r}')
        return path

    def missing_mask_hint(self) -> str:
        """Text appended to missing-mask errors (how to create the masks); empty by default."""
        return ''

    def __len__(self) -> int:
        return len(self.data_list)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def load_image(path: str) -> np.ndarray:
        """Read an image file as a ``uint8`` ``[H, W, 3]`` RGB array (see :func:`read_image`)."""
        return read_image(path)

    def load_mask(self, path: str) -> np.ndarray:
        """Read a label map, apply ``reduce_zero_label`` and check its values.

        Args:
            path: A single-channel 8- or 16-bit image of class indices, or a palette PNG whose
                palette indices are the class indices (the PASCAL VOC convention).

        Returns:
            ``[H, W]`` labels in ``0..num_classes-1`` or ``ignore_index`` (``uint8`` when they fit).

        Raises:
            ValueError: Undecodable file, not a 2-D ``uint8``/``uint16`` label map, or values that are
                neither a class index nor ``ignore_index``.
        """
        raw, buf = _decode(path, 'mask', cv2.IMREAD_UNCHANGED)
        if raw.ndim == 3 and _is_palette_png(buf):
            raw = _palette_indices(buf, path)
        if raw.ndim != 2 or raw.dtype not in (np.uint8, np.uint16):
            raise ValueError(f'mask file {path} must be a single-channel 8- or 16-bit label map of class '
                             f'indices, got shape {raw.shape} dtype {raw.dtype} (a colour image is not a label map: '
                             f'convert colours to class indices first; palette PNGs are read as their indices)')
        labels = raw.astype(np.int32)  # [H, W]
        if self.reduce_zero_label:
            keep_ignored = labels == self.ignore_index
            labels = labels - 1
            labels[(raw == 0) | keep_ignored] = self.ignore_index
        present = np.flatnonzero(np.bincount(labels.ravel()))
        bad = present[(present >= self.num_classes) & (present != self.ignore_index)]
        if bad.size:
            note = ' after reduce_zero_label' if self.reduce_zero_label else ''
            shown = ', '.join(str(v) for v in bad[:10]) + (', ...' if bad.size > 10 else '')
            raise ValueError(f'mask file {path} holds values{note} [{shown}] that are neither a class index '
                             f'(0..{self.num_classes - 1}) nor ignore_index={self.ignore_index}')
        return labels.astype(self._label_dtype)

    # ------------------------------------------------------------------ samples
    def _seed_pipeline(self) -> None:
        """Seed the pipeline once per (process, torch seed), for keys without a sample seed.

        Forked DataLoader workers would otherwise replay the same augmentations. The seed is
        ``torch.initial_seed()``: the worker seed inside a worker, the global seed in the main
        process, so ``torch.manual_seed`` makes augmentation reproducible.
        """
        key = (os.getpid(), torch.initial_seed())
        if key != self._pipeline_seed_key:
            reseed_pipeline(self.pipeline, key[1])
            self._pipeline_seed_key = key

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The sample of ``key``: an index, or ``(index, sample_seed)`` as
        :class:`seg.datasets.sampler.SeededInfiniteSampler` yields them (the augmentation of that
        draw is then seeded by ``sample_seed`` alone).

        With ``on_bad_file='skip'`` an undecodable file is skipped with a warning (and counted in
        ``self.skipped``): in training the next index is tried instead; in ``test_mode`` the sample
        is ``{'skipped': path, 'error': message}`` and no other image takes its place.
        """
        index, sample_seed = (key if isinstance(key, tuple) else (key, None))
        for attempt in range(len(self)):
            try:
                return self._sample((index + attempt) % len(self), sample_seed)
            except CorruptFileError as exc:
                if self.on_bad_file == 'stop':
                    raise
                self.skipped += 1
                logger.warning('%s; skipped (on_bad_file=skip): %d file(s) skipped so far in this process',
                               exc, self.skipped)
                if self.test_mode:  # evaluation: leave the file out, never score a neighbour twice
                    return skipped_sample(self.data_list[(index + attempt) % len(self)][0], str(exc))
        raise CorruptFileError(f'every sample of {self!r} is unreadable')

    def _sample(self, index: int, sample_seed: int | None) -> dict[str, Any]:
        img_path, seg_map_path = self.data_list[index]
        img = self.load_image(img_path)
        ori_shape = img.shape[:2]
        mask = None
        if seg_map_path is not None:
            mask = self.load_mask(seg_map_path)
            if mask.shape != ori_shape:
                raise ValueError(f'image {img_path} is {ori_shape[0]}x{ori_shape[1]} (HxW) but its mask '
                                 f'{seg_map_path} is {mask.shape[0]}x{mask.shape[1]}')
        if sample_seed is None:
            self._seed_pipeline()
        else:
            reseed_pipeline(self.pipeline, sample_seed)
            self._pipeline_seed_key = None
        if mask is not None and not self.test_mode:
            out = self.pipeline(image=img, mask=mask)
            img, mask = out['image'], out['mask']
        else:
            img = self.pipeline(image=img)['image']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'the pipeline must keep images uint8 [H, W, 3] (normalise in the model\'s data '
                             f'preprocessor), got {img.dtype} {img.shape} for {img_path}')
        data_samples: dict[str, Any] = {'img_path': img_path, 'seg_map_path': seg_map_path,
                                        'ori_shape': ori_shape, 'img_shape': img.shape[:2]}
        if mask is not None:
            data_samples['gt_sem_seg'] = torch.from_numpy(mask.astype(np.int64))  # [H, W]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))  # [3, H, W]
        return {'inputs': inputs, 'data_samples': data_samples}

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_samples={len(self)}, img_dir={self.img_dir!r}, '
                f'ann_dir={self.ann_dir!r}, test_mode={self.test_mode}, num_classes={self.num_classes})')
