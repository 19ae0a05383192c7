"""Tests of seg.visualization: palettes, colorize, overlay, side_by_side, legend."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seg.visualization import colorize, generate_palette, get_palette, legend, overlay, side_by_side


def min_pairwise_distance(colours: np.ndarray) -> float:
    c = colours.astype(np.float64)
    d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))  # [N, N]
    d[np.eye(len(c), dtype=bool)] = np.inf
    return float(d.min())


# --------------------------------------------------------------------------- palettes

def test_cityscapes_palette_matches_cityscapesscripts():
    labels = pytest.importorskip('cityscapesscripts.helpers.labels')
    palette = get_palette('cityscapes')
    assert palette.shape == (19, 3) and palette.dtype == np.uint8
    expected = [labels.trainId2label[i].color for i in range(19)]
    assert [tuple(c) for c in palette.tolist()] == expected


def test_ade20k_palette():
    palette = get_palette('ADE20K')  # case-insensitive
    assert palette.shape == (150, 3) and palette.dtype == np.uint8
    # wall, building, sky, ..., flag
    assert palette[0].tolist() == [120, 120, 120]
    assert palette[2].tolist() == [6, 230, 230]
    assert palette[149].tolist() == [92, 0, 255]
    # The official coding repeats one colour (grey 140 for 'road' and 'skyscraper'); all others differ.
    assert len(np.unique(palette, axis=0)) == 149


def test_named_palette_is_a_copy():
    a = get_palette('cityscapes')
    a[:] = 0
    assert get_palette('cityscapes')[0].tolist() == [128, 64, 128]


def test_unknown_palette_name_lists_valid_names():
    with pytest.raises(ValueError, match='ade20k, cityscapes'):
        get_palette('voc2012')


@pytest.mark.parametrize('n', [1, 7, 19, 300])
def test_generated_palette(n):
    palette = get_palette(n)
    assert palette.shape == (n, 3) and palette.dtype == np.uint8
    assert len(np.unique(palette, axis=0)) == n  # distinct
    assert np.array_equal(palette, generate_palette(n))  # deterministic
    assert np.array_equal(get_palette(n + 5)[:n], palette)  # nested: colours stay as n grows
    assert palette.max(axis=1).min() > 0  # no black: that is the ignore colour


def test_generated_palette_is_well_spread():
    # Greedy farthest-point sampling: far better than what 19 random colours usually achieve,
    # and as far from black (the ignore colour) as from each other.
    black = np.zeros((1, 3), dtype=np.uint8)
    assert min_pairwise_distance(np.vstack([black, get_palette(19)])) >= 100
    assert min_pairwise_distance(np.vstack([black, get_palette(150)])) >= 40
    rng = np.random.default_rng(0)
    random_min = np.median([min_pairwise_distance(rng.integers(0, 256, (19, 3))) for _ in range(20)])
    assert min_pairwise_distance(get_palette(19)) > 2 * random_min


@pytest.mark.parametrize('bad', [0, -3, 4096, True, 2.5])
def test_bad_palette_size(bad):
    with pytest.raises(ValueError):
        get_palette(bad)


def test_explicit_palette():
    palette = get_palette([[1, 2, 3], [250, 0, 9]])
    assert palette.dtype == np.uint8 and palette.tolist() == [[1, 2, 3], [250, 0, 9]]
    with pytest.raises(ValueError, match=r'\[N, 3\]'):
        get_palette([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r'\[0, 255\]'):
        get_palette([[1, 2, 300]])


# --------------------------------------------------------------------------- colorize

def test_colorize_uses_palette_and_ignore_colour():
    palette = get_palette('cityscapes')
    label = np.array([[0, 1, 255], [18, 255, 13]], dtype=np.uint8)
    out = colorize(label, palette)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == palette[0].tolist()
    assert out[0, 1].tolist() == palette[1].tolist()
    assert out[1, 0].tolist() == palette[18].tolist()
    assert out[1, 2].tolist() == [0, 0, 142]  # car
    assert out[0, 2].tolist() == [0, 0, 0] and out[1, 1].tolist() == [0, 0, 0]

    white = colorize(label.astype(np.int64), 'cityscapes', ignore_color=(255, 255, 255))
    assert white[0, 2].tolist() == [255, 255, 255]
    assert np.array_equal(white[0, :2], out[0, :2])

    other = colorize(np.array([[0, -1]]), 3, ignore_index=-1, ignore_color=(9, 9, 9))
    assert other[0, 1].tolist() == [9, 9, 9] and other[0, 0].tolist() == get_palette(3)[0].tolist()

    from_tensor = colorize(torch.tensor([[0, 1]]), palette)
    assert np.array_equal(from_tensor, out[:1, :2])


def test_colorize_errors():
    with pytest.raises(ValueError, match=r'\[19, 20\]'):
        colorize(np.array([[0, 19], [20, 255]]), 'cityscapes')
    with pytest.raises(ValueError, match='integer'):
        colorize(np.zeros((2, 2), dtype=np.float32), 'cityscapes')
    with pytest.raises(ValueError, match=r'\[H, W\]'):
        colorize(np.zeros((1, 2, 2), dtype=np.int64), 'cityscapes')
    with pytest.raises(ValueError, match='ignore_color'):
        colorize(np.zeros((2, 2), dtype=np.int64), 'cityscapes', ignore_color=(0, 0))


# --------------------------------------------------------------------------- overlay & tiles

def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_overlay_blends():
    image = _image(5, 7)
    colours = colorize(np.random.default_rng(1).integers(0, 19, (5, 7)), 'cityscapes')
    out = overlay(image, colours, alpha=0.5)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    expected = (image.astype(np.float64) + colours) / 2
    assert np.abs(out - expected).max() <= 0.5 + 1e-9
    assert np.array_equal(overlay(image, colours, alpha=0.0), image)
    assert np.array_equal(overlay(image, colours, alpha=1.0), colours)

    mask = np.zeros((5, 7), dtype=bool)
    mask[:, :3] = True
    masked = overlay(image, colours, alpha=1.0, mask=mask)
    assert np.array_equal(masked[:, :3], colours[:, :3]) and np.array_equal(masked[:, 3:], image[:, 3:])

    grey = overlay(image[:, :, 0], colours, alpha=0.0)
    assert grey.shape == (5, 7, 3) and np.array_equal(grey[:, :, 2], image[:, :, 0])


def test_overlay_errors():
    image = _image(4, 4)
    with pytest.raises(ValueError, match='same size'):
        overlay(image, _image(4, 5))
    with pytest.raises(ValueError, match='alpha'):
        overlay(image, image, alpha=1.5)
    with pytest.raises(ValueError, match='uint8'):
        overlay(image.astype(np.float32), image)
    with pytest.raises(ValueError, match='mask'):
        overlay(image, image, mask=np.ones((3, 3), dtype=bool))


def test_side_by_side():
    a, b, c = _image(10, 6), _image(5, 4, 1), _image(10, 3, 2)[:, :, 0]
    out = side_by_side(a, b, c)
    assert out.dtype == np.uint8 and out.shape == (10, 6 + 8 + 3, 3)
    assert np.array_equal(out[:, :6], a)
    assert np.array_equal(out[:, 6:14], np.repeat(np.repeat(b, 2, axis=0), 2, axis=1))  # nearest x2
    assert np.array_equal(out[:, 14:, 1], c)

    gapped = side_by_side(a, a, gap=2, gap_color=(1, 2, 3))
    assert gapped.shape == (10, 14, 3)
    assert (gapped[:, 6:8] == np.array([1, 2, 3], dtype=np.uint8)).all()
    assert side_by_side(a, b, height=20).shape == (20, 12 + 16, 3)
    assert np.array_equal(side_by_side(a), a)
    with pytest.raises(ValueError, match='at least one'):
        side_by_side()
    with pytest.raises(ValueError, match='uint8'):
        side_by_side(a, a.astype(np.int64))


def test_legend():
    names = ['road', 'sidewalk', 'building']
    palette = get_palette('cityscapes')
    img = legend(names, palette, swatch=12)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    for colour in palette[:3]:
        assert (img == colour).all(axis=2).sum() >= 12 * 12  # a full swatch of each colour
    assert (img == palette[3]).all(axis=2).sum() == 0
    taller = legend(names * 2, 'cityscapes', swatch=12)
    assert taller.shape[0] > img.shape[0]
    wide = legend(names * 2, 'cityscapes', swatch=12, columns=2)
    assert wide.shape[0] == img.shape[0] and wide.shape[1] == 2 * img.shape[1]
    with pytest.raises(ValueError, match='colours'):
        legend(['a', 'b', 'c'], 2)


def test_class_differences_are_a_compact_grid_for_many_classes(tmp_path):
    import cv2
    import pytest

    from seg.visualization.plots import plot_class_differences

    rows = [(m, [(float(i % 7) - 3, -1.0, 1.0 if i % 2 else -0.5) for i in range(150)]) for m in ('a', 'b', 'c')]
    path = plot_class_differences([f'c{i}' for i in range(150)], rows, str(tmp_path / 'grid.png'))
    h, w = cv2.imread(path).shape[:2]
    assert w <= 4000 and h <= 400  # a bar per model and class would be ~16000 px tall here
    with pytest.raises(ValueError, match='150'):
        plot_class_differences([f'c{i}' for i in range(150)], [('a', rows[0][1][:10])], str(tmp_path / 'x.png'))
