"""The Cityscapes Dataset for Semantic Urban Scene Understanding (Cordts et al., CVPR 2016).

https://arxiv.org/abs/1604.01685 -- https://www.cityscapes-dataset.com

Layout under ``data_root``::

    leftImg8bit/{train,val,test}/{city}/{name}_leftImg8bit.png
    gtFine/{train,val,test}/{city}/{name}_gtFine_labelTrainIds.png

The ``*_labelTrainIds.png`` masks (19 train classes, 255 = ignore) are not in the download; the
``csCreateTrainIdLabelImgs`` command of ``cityscapesscripts`` creates them from the polygons.
The test split's labels are withheld, so ``split='test'`` yields images only; a prediction in train
ids (0..18) is written for the test server as ``<city>_<seq>_<frame>_leftImg8bit.png`` holding
**labelIds** (cityscapesscripts' label table maps each train id back): :meth:`CityscapesDataset.write_result`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from seg.fileio import output_path
from seg.registry import DATASETS

from .base import BaseSegDataset
from .palette import CITYSCAPES_PALETTE

__all__ = ['TRAIN_ID_TO_LABEL_ID', 'CityscapesDataset', 'result_name', 'to_label_ids']


def _train_to_label() -> np.ndarray:
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros(256, dtype=np.uint8)  # anything else -> 0 ('unlabeled')
    for label in labels:
        if 0 <= label.trainId < 255:
            lut[label.trainId] = label.id
    return lut


TRAIN_ID_TO_LABEL_ID = _train_to_label()
"""train id (0..18) -> Cityscapes labelId, from cityscapesscripts' label table."""


def to_label_ids(pred: np.ndarray) -> np.ndarray:
    """(H, W) train ids -> (H, W) uint8 labelIds."""
    pred = np.asarray(pred)
    if pred.min() < 0 or pred.max() > 18:
        raise ValueError(f'Cityscapes predictions hold train ids 0..18, got values in [{pred.min()}, {pred.max()}]')
    return TRAIN_ID_TO_LABEL_ID[pred.astype(np.int64)]


def result_name(img_path: str) -> str:
    """The result file of an image: ``<city>_<seq>_<frame>_leftImg8bit.png``."""
    return os.path.splitext(os.path.basename(img_path))[0] + '.png'

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
    'bicycle')


@DATASETS.register_module()
class CityscapesDataset(BaseSegDataset):
    """Cityscapes fine annotations with the 19 evaluation classes (train ids).

    Args:
        data_root: The directory holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``'train'``, ``'val'`` or ``'test'`` (images only).
        pipeline: Transform configs (see :func:`seg.datasets.transforms.build_pipeline`).
        test_mode: Transform the image only; masks keep their file size.
        ignore_index: Label of unlabelled pixels (255 in ``*_labelTrainIds.png``).
        on_bad_file: ``'stop'`` or ``'skip'`` on an undecodable file (see :class:`BaseSegDataset`).
    """

    METAINFO = {'classes': CITYSCAPES_CLASSES, 'palette': list(CITYSCAPES_PALETTE)}
    SPLITS = ('train', 'val', 'test')

    def __init__(self, data_root: str, split: str = 'train', pipeline: Sequence[dict] | None = None,
                 test_mode: bool = False, ignore_index: int = 255, on_bad_file: str = 'stop'):
        if split not in self.SPLITS:
            raise ValueError(f'CityscapesDataset: split must be one of {self.SPLITS}, got {split!r}')
        self.split = split
        super().__init__(
            data_root=data_root, img_dir=f'leftImg8bit/{split}',
            ann_dir=None if split == 'test' else f'gtFine/{split}',
            img_suffix='_leftImg8bit.png', seg_map_suffix='_gtFine_labelTrainIds.png', pipeline=pipeline,
            test_mode=test_mode, ignore_index=ignore_index, reduce_zero_label=False, on_bad_file=on_bad_file)

    def write_result(self, pred: np.ndarray, img_path: str, out_dir: str) -> str:
        """The test server's file of a train-id prediction: labelIds in ``<name>_leftImg8bit.png``."""
        path = str(output_path(out_dir, result_name(img_path)))
        if not cv2.imwrite(path, to_label_ids(pred)):
            raise OSError(f'could not write {path!r}')
        return path

    def missing_mask_hint(self) -> str:
        """How to create the ``*_gtFine_labelTrainIds.png`` masks."""
        return ('; the *_gtFine_labelTrainIds.png masks are created from the Cityscapes polygons by '
                'cityscapesscripts: pip install cityscapesscripts, then run '
                f'CITYSCAPES_DATASET={self.data_root} csCreateTrainIdLabelImgs')
