"""The colours of the classes: the datasets' official palettes and the one palette generator of ``seg``.

Named palettes are the datasets' official colour codings:

- ``'cityscapes'``: the 19 evaluation classes in train-id order, colours of the Cityscapes
  benchmark (The Cityscapes Dataset for Semantic Urban Scene Understanding, Cordts et al.,
  CVPR 2016, https://arxiv.org/abs/1604.01685).
- ``'ade20k'``: the 150 classes of the SceneParsing benchmark (Scene Parsing through ADE20K
  Dataset, Zhou et al., CVPR 2017, https://arxiv.org/abs/1608.05442), colours as used by
  the benchmark's toolkit and by mmsegmentation.

Any other class list gets a generated palette (:func:`generate_palette`): greedy farthest-point
sampling on a 16-level RGB grid, starting away from black (the default ignore colour). It is
deterministic and nested: ``generate_palette(n)[:k]`` equals ``generate_palette(k)``, so colours
stay put as classes are added.
"""
from __future__ import annotations

import numpy as np

__all__ = ['ADE20K_PALETTE', 'CITYSCAPES_PALETTE', 'MAX_GENERATED_COLOURS', 'NAMED_PALETTES', 'generate_palette']

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
