"""Colour palettes for label maps, and turning a label map into an RGB image.

Named palettes are the datasets' official colour codings:

- ``'cityscapes'``: the 19 evaluation classes in train-id order, colours of the Cityscapes
  benchmark (The Cityscapes Dataset for Semantic Urban Scene Understanding, Cordts et al.,
  CVPR 2016, https://arxiv.org/abs/1604.01685).
- ``'ade20k'``: the 150 classes of the SceneParsing benchmark (Scene Parsing through ADE20K
  Dataset, Zhou et al., CVPR 2017, https://arxiv.org/abs/1608.05442), colours as used by
  the benchmark's toolkit and by mmsegmentation.

Any other class count gets a generated palette: greedy farthest-point sampling on a 16-level
RGB grid, starting away from black (the default ignore colour). It is deterministic and
nested: ``get_palette(n)[:k]`` equals ``get_palette(k)``, so colours stay put as classes are
added.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

PaletteLike = Union[str, int, np.ndarray, Sequence[Sequence[int]]]

CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

ADE20K_PALETTE: tuple[tuple[int, int, int], ...] = (
    # 0-9
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    # 10-19
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    # 20-29
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    # 30-39
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    # 40-49
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    # 50-59
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    # 60-69
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    # 70-79
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    # 80-89
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    # 90-99
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    # 100-109
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    # 110-119
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    # 120-129
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    # 130-139
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    # 140-149
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)

NAMED_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    'cityscapes': CITYSCAPES_PALETTE,
    'ade20k': ADE20K_PALETTE,
}

# Levels per channel of the grid the generated palette is sampled from.
_GRID_LEVELS = 16
MAX_GENERATED_COLOURS = _GRID_LEVELS ** 3 - 1  # every grid colour but black


class _FarthestPointSampler:
    """Grid colours in greedy farthest-point order, computed lazily and kept.

    Starting from black, each step takes the grid colour farthest (Euclidean in RGB) from
    every colour taken so far; ties go to the lowest grid index, so the order is fixed.
    """

    def __init__(self, levels: int) -> None:
        values = np.linspace(0, 255, levels).round().astype(np.int64)
        grid = np.stack(np.meshgrid(values, values, values, indexing='ij'), axis=-1)  # [L, L, L, 3]
        self._grid = grid.reshape(-1, 3).astype(np.float64)  # [L^3, 3]
        # Squared distance of every grid colour to its nearest taken colour (black taken).
        self._nearest = (self._grid ** 2).sum(axis=1)  # [L^3]
        self._taken: list[int] = []

    def first(self, n: int) -> np.ndarray:
        """The first ``n`` colours of the order, [n, 3] uint8."""
        while len(self._taken) < n:
            j = int(np.argmax(self._nearest))
            self._taken.append(j)
            dist = ((self._grid - self._grid[j]) ** 2).sum(axis=1)  # [L^3]
            self._nearest = np.minimum(self._nearest, dist)
        return self._grid[self._taken[:n]].astype(np.uint8)  # [n, 3]


_SAMPLER = _FarthestPointSampler(_GRID_LEVELS)


def generate_palette(n: int) -> np.ndarray:
    """A deterministic, well-spread palette of ``n`` distinct colours, none of them black.

    Args:
        n: number of colours, 1 to ``MAX_GENERATED_COLOURS`` (4095).

    Returns:
        [n, 3] uint8 RGB. Nested: the first k colours do not depend on n.

    Raises:
        ValueError: if ``n`` is not an integer in range.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_GENERATED_COLOURS:
        raise ValueError(f'palette size must be an integer in [1, {MAX_GENERATED_COLOURS}], got {n!r}')
    return _SAMPLER.first(int(n))


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
