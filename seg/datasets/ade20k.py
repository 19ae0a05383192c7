"""Scene Parsing through ADE20K Dataset (Zhou et al., CVPR 2017): the 150-class SceneParsing benchmark.

https://openaccess.thecvf.com/content_cvpr_2017/papers/Zhou_Scene_Parsing_Through_CVPR_2017_paper.pdf
-- http://sceneparsing.csail.mit.edu

Layout (``data_root`` is the unpacked ``ADEChallengeData2016``)::

    images/{training,validation}/ADE_*.jpg
    annotations/{training,validation}/ADE_*.png     # 0 = other, 1..150 = classes

``reduce_zero_label=True`` (default) maps 0 to the ignore index and class ``k`` to ``k - 1``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from seg.registry import DATASETS

from .base import BaseSegDataset
from .palette import generate_palette

__all__ = ['ADE20KDataset']

ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair',
    'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair',
    'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box',
    'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
    'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table', 'pillow',
    'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind', 'coffee table', 'toilet',
    'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm', 'kitchen island', 'computer',
    'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower',
    'chandelier', 'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track',
    'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster',
    'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything',
    'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle',
    'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle',
    'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light',
    'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower',
    'radiator', 'glass', 'clock', 'flag')


@DATASETS.register_module()
class ADE20KDataset(BaseSegDataset):
    """ADE20K SceneParsing, 150 classes.

    Args:
        data_root: The ``ADEChallengeData2016`` directory.
        split: ``'training'`` or ``'validation'``.
        pipeline: Transform configs (see :func:`seg.datasets.transforms.build_pipeline`).
        test_mode: Transform the image only; masks keep their file size.
        ignore_index: Label of ignored pixels.
        reduce_zero_label: Map the "other" label 0 to ``ignore_index`` and shift classes down by one.
        on_bad_file: ``'stop'`` or ``'skip'`` on an undecodable file (see :class:`BaseSegDataset`).
    """

    # The generated palette: the benchmark's official one (seg.datasets.palette.ADE20K_PALETTE, the
    # 'ade20k' palette of the drawings) gives two classes the same grey.
    METAINFO = {'classes': ADE20K_CLASSES, 'palette': generate_palette(len(ADE20K_CLASSES)).tolist()}
    SPLITS = ('training', 'validation')

    def __init__(self, data_root: str, split: str = 'training', pipeline: Sequence[dict] | None = None,
                 test_mode: bool = False, ignore_index: int = 255, reduce_zero_label: bool = True,
                 on_bad_file: str = 'stop'):
        if split not in self.SPLITS:
            raise ValueError(f'ADE20KDataset: split must be one of {self.SPLITS}, got {split!r}')
        nested = os.path.join(str(data_root), 'ADEChallengeData2016')
        if not os.path.isdir(os.path.join(str(data_root), 'images')) and os.path.isdir(nested):
            raise FileNotFoundError(f'ADE20KDataset: {data_root} has no images/ directory; data_root must '
                                    f'point at the ADEChallengeData2016 directory itself: {nested}')
        self.split = split
        super().__init__(
            data_root=data_root, img_dir=f'images/{split}', ann_dir=f'annotations/{split}',
            img_suffix='.jpg', seg_map_suffix='.png', pipeline=pipeline, test_mode=test_mode,
            ignore_index=ignore_index, reduce_zero_label=reduce_zero_label, on_bad_file=on_bad_file)
