"""Turning a label map into an RGB image, with a palette by name, by class count or given.

The palettes themselves (the datasets' official ones, and the generator of every other one) are
:mod:`seg.datasets.palette`: one generator, which the datasets and the drawings share.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from seg.datasets.palette import ADE20K_PALETTE, CITYSCAPES_PALETTE, NAMED_PALETTES, generate_palette

__all__ = ['ADE20K_PALETTE', 'CITYSCAPES_PALETTE', 'NAMED_PALETTES', 'PaletteLike', 'colorize', 'generate_palette',
           'get_palette']

PaletteLike = Union[str, int, np.ndarray, Sequence[Sequence[int]]]

def get_palette(name_or_n: PaletteLike) -> np.ndarray:
    """A palette by dataset name, by class count, or from explicit colours.

    Args:
        name_or_n: ``'cityscapes'`` (19 colours) or ``'ade20k'`` (150 colours), case-insensitive;
            an int n for a generated palette of n colours (see :func:`generate_palette`); or an
            explicit [N, 3] array / sequence of RGB triplets in [0, 255] (such as
            ``dataset_meta['palette']``), returned as a uint8 array.

    Returns:
        [N, 3] uint8 RGB, a new array the caller may modify.

    Raises:
        ValueError: for an unknown name (the valid names are listed), a bad size, or colours
            that are not [N, 3] values in [0, 255].
    """
    if isinstance(name_or_n, str):
        key = name_or_n.lower()
        if key not in NAMED_PALETTES:
            raise ValueError(f'unknown palette {name_or_n!r}; valid names are: '
                             f'{", ".join(sorted(NAMED_PALETTES))} (or pass a class count)')
        return np.array(NAMED_PALETTES[key], dtype=np.uint8)
    if isinstance(name_or_n, (int, np.integer)) and not isinstance(name_or_n, bool):
        return generate_palette(int(name_or_n))
    try:
        colours = np.asarray(name_or_n)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'palette must be a name, a class count or [N, 3] RGB colours, '
                         f'got {type(name_or_n).__name__}') from exc
    if colours.ndim != 2 or colours.shape[1] != 3 or colours.shape[0] == 0:
        raise ValueError(f'palette colours must have shape [N, 3] with N >= 1, got {colours.shape}')
    if colours.dtype.kind not in 'iuf' or not np.all((colours >= 0) & (colours <= 255)):
        raise ValueError('palette colours must be numbers in [0, 255]')
    if colours.dtype.kind == 'f' and not np.all(colours == np.round(colours)):
        raise ValueError('palette colours must be whole numbers in [0, 255]')
    return colours.astype(np.uint8)


def colorize(label: np.ndarray, palette: PaletteLike, ignore_index: int = 255,
             ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Paint a label map with a palette.

    Args:
        label: [H, W] integer class indices (a CPU torch tensor works too).
        palette: [N, 3] colours, or anything :func:`get_palette` accepts.
        ignore_index: label value painted with ``ignore_color`` instead of a class colour.
        ignore_color: RGB colour of ignored pixels.

    Returns:
        [H, W, 3] uint8 RGB image.

    Raises:
        ValueError: if ``label`` is not a 2-D integer map, or holds values outside [0, N)
            other than ``ignore_index`` (the offending values are named).
    """
    colours = get_palette(palette)
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'label must be an [H, W] map, got shape {label.shape}')
    if label.dtype.kind not in 'iub':
        raise ValueError(f'label must hold integer class indices, got dtype {label.dtype}')
    ignore = np.asarray(ignore_color)
    if ignore.shape != (3,) or not np.all((ignore >= 0) & (ignore <= 255)):
        raise ValueError(f'ignore_color must be an RGB triplet in [0, 255], got {ignore_color!r}')
    n = colours.shape[0]
    label = label.astype(np.int64)
    is_ignored = label == ignore_index
    bad = ~is_ignored & ((label < 0) | (label >= n))
    if bad.any():
        values = np.unique(label[bad])
        raise ValueError(f'label values {values[:10].tolist()} are outside the palette range [0, {n}) '
                         f'and not ignore_index {ignore_index}')
    # One look-up table with the ignore colour appended as entry n.
    lut = np.concatenate([colours, ignore.astype(np.uint8)[None]], axis=0)  # [N + 1, 3]
    return lut[np.where(is_ignored, n, label)]  # [H, W, 3]
