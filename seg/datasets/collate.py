"""Batch collation for the sample contract of :class:`seg.datasets.base.BaseSegDataset`.

Images of one batch may differ in size (test pipelines keep each image's size), so inputs stay a
list; the model's data preprocessor pads and stacks them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmengine.registry import FUNCTIONS

__all__ = ['seg_collate']


@FUNCTIONS.register_module()
def seg_collate(batch: Sequence[dict[str, Any]]) -> dict[str, list]:
    """Gather samples into ``dict(inputs=list[Tensor], data_samples=list[dict])``, in order.

    Registered in mmengine's root ``FUNCTIONS`` so configs can say
    ``collate_fn=dict(type='seg_collate')``.

    Args:
        batch: Samples ``dict(inputs=Tensor, data_samples=dict)``.

    Returns:
        The inputs and the data samples as two lists of equal length; plus ``skipped``, the
        ``{'skipped': path, 'error': message}`` entries of unreadable evaluation files
        (:func:`seg.datasets.base.skipped_sample`), when the batch had any.

    Raises:
        ValueError: A sample is not a dict with ``inputs`` and ``data_samples``.
    """
    inputs, data_samples, skipped = [], [], []
    for i, sample in enumerate(batch):
        if isinstance(sample, dict) and 'skipped' in sample:
            skipped.append(sample)
            continue
        if not isinstance(sample, dict) or 'inputs' not in sample or 'data_samples' not in sample:
            found = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
            raise ValueError(f'seg_collate: sample {i} must be a dict with keys "inputs" and "data_samples", '
                             f'got {found}')
        inputs.append(sample['inputs'])
        data_samples.append(sample['data_samples'])
    out = {'inputs': inputs, 'data_samples': data_samples}
    if skipped:
        out['skipped'] = skipped
    return out
