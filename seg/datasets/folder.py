"""A user's own data: images and same-stem masks in two directories (or images only)."""
from __future__ import annotations

from collections.abc import Sequence

from seg.registry import DATASETS

from .base import BaseSegDataset

__all__ = ['FolderDataset']


@DATASETS.register_module()
class FolderDataset(BaseSegDataset):
    """Images under ``img_dir`` paired with the mask of the same stem under ``ann_dir``.

    Sub-directories are searched too; ``img_dir/a/b.jpg`` pairs with ``ann_dir/a/b.png``. Masks are
    single-channel 8- or 16-bit PNGs of class indices.

    Args:
        data_root: Root that ``img_dir`` and ``ann_dir`` are relative to.
        img_dir: Image directory.
        ann_dir: Mask directory; ``None`` for images only (inference).
        classes: Class names, index order.
        palette: One RGB triple per class; ``None`` for a generated palette.
        img_suffix: Ending of image file names.
        seg_map_suffix: Ending of mask file names.
        pipeline: Transform configs (see :func:`seg.datasets.transforms.build_pipeline`).
        test_mode: Transform the image only; masks keep their file size.
        ignore_index: Label of ignored pixels.
        reduce_zero_label: Map label 0 to ``ignore_index`` and shift the others down by one.
        on_bad_file: ``'stop'`` or ``'skip'`` on an undecodable file (see :class:`BaseSegDataset`).
    """

    def __init__(self, data_root: str, img_dir: str, ann_dir: str | None = None, *,
                 classes: Sequence[str], palette: Sequence[Sequence[int]] | None = None,
                 img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 pipeline: Sequence[dict] | None = None, test_mode: bool = False, ignore_index: int = 255,
                 reduce_zero_label: bool = False, on_bad_file: str = 'stop'):
        super().__init__(
            data_root=data_root, img_dir=img_dir, ann_dir=ann_dir, img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix, pipeline=pipeline, test_mode=test_mode,
            ignore_index=ignore_index, reduce_zero_label=reduce_zero_label, classes=classes,
            palette=palette, on_bad_file=on_bad_file)
