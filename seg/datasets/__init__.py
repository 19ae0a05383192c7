"""Datasets, albumentations pipelines and batch collation of ``seg``.

Importing this package registers the datasets in ``DATASETS``, the transforms in ``TRANSFORMS`` and
``seg_collate`` in mmengine's ``FUNCTIONS``.
"""
from .ade20k import ADE20KDataset
from .base import BaseSegDataset, CorruptFileError, read_image
from .cityscapes import CityscapesDataset
from .collate import seg_collate
from .folder import FolderDataset
from .palette import generate_palette
from .sampler import SeededInfiniteSampler
from .synthetic import SyntheticStreets, ensure_synthetic_split, render_street_scene
from .transforms import (
                         Pad,
                         PhotoMetricDistortion,
                         RandomCrop,
                         RandomFlip,
                         RandomResize,
                         Resize,
                         build_pipeline,
                         reseed_pipeline,
)

__all__ = [
    'ADE20KDataset', 'BaseSegDataset', 'CityscapesDataset', 'CorruptFileError', 'FolderDataset', 'Pad', 'PhotoMetricDistortion',
    'RandomCrop', 'RandomFlip', 'RandomResize', 'Resize', 'SeededInfiniteSampler', 'SyntheticStreets', 'build_pipeline',
    'ensure_synthetic_split', 'generate_palette', 'read_image', 'render_street_scene', 'reseed_pipeline', 'seg_collate',
]
