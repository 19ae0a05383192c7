"""Blending colour label maps over images, tiling images side by side, and class legends.

All functions take and return RGB ``uint8`` numpy arrays laid out [H, W, 3].
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .palette import PaletteLike, get_palette


def _as_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """Check a uint8 image and return it as [H, W, 3] (grey [H, W] is repeated)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f'{what} must be uint8, got dtype {image.dtype}')
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # [H, W, 3]
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'{what} must be [H, W, 3] RGB or [H, W] grey, got shape {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'{what} is empty, shape {image.shape}')
    return np.ascontiguousarray(image)


def overlay(image_rgb: np.ndarray, color_label: np.ndarray, alpha: float = 0.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a colour label map over an image: ``(1 - alpha) * image + alpha * colours``.

    Args:
        image_rgb: [H, W, 3] (or grey [H, W]) uint8 image.
        color_label: [H, W, 3] uint8 colour label map of the same size, e.g. from
            :func:`seg.visualization.colorize`.
        alpha: weight of the label colours, in [0, 1].
        mask: optional [H, W] bool map; where False the image is left unblended (use it to
            keep ignored pixels visible instead of tinting them with the ignore colour).

    Returns:
        [H, W, 3] uint8 blend, rounded to the nearest integer.

    Raises:
        ValueError: on a non-uint8 input, mismatched sizes, or ``alpha`` outside [0, 1].
    """
    image = _as_rgb(image_rgb, 'image_rgb')
    colours = _as_rgb(color_label, 'color_label')
    if image.shape != colours.shape:
        raise ValueError(f'image_rgb {image.shape} and color_label {colours.shape} must have the same size')
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    blend = cv2.addWeighted(image, 1.0 - float(alpha), colours, float(alpha), 0.0)  # [H, W, 3] uint8
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(f'mask must be [H, W] = {image.shape[:2]}, got {mask.shape}')
        blend = np.where(mask[:, :, None], blend, image)  # [H, W, 3]
    return blend


def side_by_side(*images: np.ndarray, height: int | None = None, gap: int = 0,
                 gap_color: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Tile images left to right at one height.

    Images of another height are resized to it keeping their aspect ratio, with
    nearest-neighbour interpolation so label colours stay exact.

    Args:
        *images: one or more [H, W, 3] (or grey [H, W]) uint8 images.
        height: target height; defaults to the first image's height.
        gap: pixels of ``gap_color`` between neighbours.
        gap_color: RGB colour of the gaps.

    Returns:
        [height, sum of widths + gaps, 3] uint8 image.

    Raises:
        ValueError: when no image is given, an image is not uint8 RGB/grey, or ``height`` /
            ``gap`` are out of range.
    """
    if not images:
        raise ValueError('side_by_side needs at least one image')
    rgb = [_as_rgb(img, f'image {i}') for i, img in enumerate(images)]
    target = rgb[0].shape[0] if height is None else int(height)
    if target < 1:
        raise ValueError(f'height must be >= 1, got {height}')
    if gap < 0:
        raise ValueError(f'gap must be >= 0, got {gap}')
    tiles = []
    for i, img in enumerate(rgb):
        if img.shape[0] != target:
            width = max(1, round(img.shape[1] * target / img.shape[0]))
            img = cv2.resize(img, (width, target), interpolation=cv2.INTER_NEAREST)  # [target, W', 3]
        if i and gap:
            tiles.append(np.empty((target, gap, 3), dtype=np.uint8))
            tiles[-1][:] = np.asarray(gap_color, dtype=np.uint8)
        tiles.append(img)
    return np.concatenate(tiles, axis=1)  # [target, sum W, 3]


def legend(class_names: Sequence[str], palette: PaletteLike, swatch: int = 16,
           font_scale: float = 0.45, columns: int = 1) -> np.ndarray:
    """An image listing each class colour beside its name, on white.

    Args:
        class_names: one name per class.
        palette: [N, 3] colours or anything :func:`get_palette` accepts, N >= number of names.
        swatch: side of each colour square in pixels.
        font_scale: OpenCV Hershey font scale of the names.
        columns: number of columns the entries are spread over (filled column by column).

    Returns:
        [H, W, 3] uint8 RGB image.

    Raises:
        ValueError: if there are no names, fewer colours than names, or bad sizes.
    """
    names = [str(n) for n in class_names]
    colours = get_palette(palette)
    if not names:
        raise ValueError('legend needs at least one class name')
    if colours.shape[0] < len(names):
        raise ValueError(f'palette has {colours.shape[0]} colours for {len(names)} class names')
    if swatch < 1 or columns < 1:
        raise ValueError(f'swatch and columns must be >= 1, got {swatch} and {columns}')
    font = cv2.FONT_HERSHEY_SIMPLEX
    pad = max(2, swatch // 4)
    text_w = max(cv2.getTextSize(n, font, font_scale, 1)[0][0] for n in names)
    cell_w = pad + swatch + pad + text_w + 2 * pad
    cell_h = swatch + pad
    rows = -(-len(names) // columns)
    canvas = np.full((rows * cell_h + pad, columns * cell_w, 3), 255, dtype=np.uint8)
    for i, (name, colour) in enumerate(zip(names, colours)):
        col, row = divmod(i, rows)
        x0, y0 = col * cell_w + pad, row * cell_h + pad
        canvas[y0:y0 + swatch, x0:x0 + swatch] = colour
        (_, th), _ = cv2.getTextSize(name, font, font_scale, 1)
        baseline_y = y0 + (swatch + th) // 2
        cv2.putText(canvas, name, (x0 + swatch + pad, baseline_y), font, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return canvas
