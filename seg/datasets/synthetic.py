"""SyntheticStreets: a generated street-scene dataset where one class pair needs long-range context.

No paper: a demo and test dataset for context heads (criss-cross, non-local, dual attention).

Scenes (drawn with vectorised numpy, deterministic from ``(seed, split, index)``):

* sky (vertical gradient) above a random horizon; a skyline of buildings (facade colour per
  building, a grid of windows); trees (noisy green ellipses) standing at the horizon;
* below the horizon a perspective road (a trapezoid towards a vanishing point, white edge lines and
  a dashed centre line) between two tiled sidewalks; cars (body, windows, wheels) on the road;
* round traffic signs (red-ring or blue) standing on the sidewalks, in any scene;
* the **context pair** ``CONTEXT_PAIR = ('road', 'bus_lane')``: the road surface of a scene is
  labelled ``bus_lane`` if and only if the scene holds a bus-stop panel (class ``bus_stop``: a
  yellow, dark-framed rectangle with a dark icon) somewhere on a sidewalk, else ``road``. Half the
  scenes have one. Road and bus lane are drawn by the very same code with the same random draws,
  independent of the label, so a road pixel and its neighbourhood look exactly alike in both
  cases; the panel stands near the horizon, usually far from most lane pixels (which crowd the
  bottom of the image). Only a receptive field that reaches the panel tells the two apart.

Every surface gets per-image colour jitter, a global gain and tint, and per-pixel luminance and
chroma noise, so colour at a pixel does not give the class away; all other classes are still easy
to tell apart locally by colour and texture, so a small CNN learns the scenes quickly.

Files: ``{data_root}/img_dir/{split}/{index:05d}.png`` (RGB), ``{data_root}/ann_dir/{split}/{index:05d}.png``
(class indices, uint8) and ``{data_root}/manifest_{split}.json`` (seed, size, count, version). The
split is regenerated whenever the manifest or the file count disagrees with the request.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np

from seg.registry import DATASETS

from .base import BaseSegDataset

__all__ = ['SYNTHETIC_CLASSES', 'SYNTHETIC_PALETTE', 'SyntheticStreets', 'ensure_synthetic_split',
           'render_street_scene']

SYNTHETIC_CLASSES = ('road', 'bus_lane', 'sidewalk', 'building', 'vegetation', 'sky', 'car',
                     'traffic_sign', 'bus_stop')
SYNTHETIC_PALETTE = [(128, 64, 128), (230, 150, 140), (244, 35, 232), (70, 70, 70), (107, 142, 35),
                     (70, 130, 180), (0, 0, 142), (220, 220, 0), (250, 170, 30)]
ROAD, BUS_LANE, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, TRAFFIC_SIGN, BUS_STOP = range(9)

GENERATOR_VERSION = 1
_SPLIT_CODES = {'train': 0, 'val': 1}

# Base colours (RGB); each gets a per-image or per-object jitter.
_SKY_TOP, _SKY_LOW = np.array([80, 130, 200.]), np.array([175, 205, 235.])
_FACADES = np.array([[150, 80, 60], [190, 170, 140], [125, 125, 130], [95, 110, 135], [170, 120, 90.]])
_WINDOW = np.array([45, 55, 75.])
_SIDEWALK = np.array([168, 156, 144.])
_ASPHALT = np.array([92, 93, 98.])
_MARKING = np.array([225, 225, 215.])
_LEAVES = np.array([55, 110, 40.])
_CAR_BODIES = np.array([[175, 30, 35], [35, 65, 160], [225, 225, 225], [35, 35, 40], [150, 150, 160],
                        [30, 110, 70.]])
_YELLOW, _DARK = np.array([240, 200, 25.]), np.array([30, 30, 35.])
_RED, _BLUE, _WHITE = np.array([200, 30, 35.]), np.array([30, 70, 185.]), np.array([235, 235, 235.])


class _Canvas:
    """A label map, a colour image and a per-pixel noise strength painted together."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.labels = np.full((h, w), SKY, np.uint8)  # [H, W]
        self.colour = np.zeros((h, w, 3), np.float32)  # [H, W, 3]
        self.sigma = np.zeros((h, w), np.float32)  # [H, W]
        self.yy = np.arange(h, dtype=np.float32)[:, None]  # [H, 1]
        self.xx = np.arange(w, dtype=np.float32)[None, :]  # [1, W]

    def paint(self, where: Any, label: int | None, colour: Any, sigma: float | None = None) -> None:
        """Paint ``where`` (a boolean map or a slice pair); ``label=None`` keeps the labels."""
        if label is not None:
            self.labels[where] = label
        self.colour[where] = colour
        if sigma is not None:
            self.sigma[where] = sigma

    def box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        """The slice pair of a box clipped to the canvas, or None when it is empty."""
        ys, ye = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        xs, xe = max(int(round(x0)), 0), min(int(round(x1)), self.w)
        return (slice(ys, ye), slice(xs, xe)) if ys < ye and xs < xe else None


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return colour + rng.uniform(-amount, amount, size=3)


def render_street_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene.

    Args:
        rng: The scene's random generator (the only source of randomness).
        h: Image height (>= 32).
        w: Image width (>= 32).

    Returns:
        ``(image, labels)``: ``uint8`` RGB ``[h, w, 3]`` and ``uint8`` class indices ``[h, w]``.
    """
    cv = _Canvas(h, w)
    has_stop = bool(rng.random() < 0.5)
    horizon = int(h * rng.uniform(0.38, 0.5))

    # Sky: a vertical gradient down to the horizon.
    frac = np.clip(cv.yy / max(horizon, 1), 0, 1)[..., None]  # [H, 1, 1]
    sky_top, sky_low = _jitter(rng, _SKY_TOP, 15), _jitter(rng, _SKY_LOW, 12)
    cv.colour[:] = sky_top + (sky_low - sky_top) * frac  # [H, W, 3] by broadcasting
    cv.sigma[:] = 4.0

    # Buildings along the horizon, each with a facade colour and a window grid.
    x = -w * rng.uniform(0.0, 0.1)
    while x < w:
        bw = w * rng.uniform(0.1, 0.25)
        if rng.random() < 0.85:
            top = horizon - h * rng.uniform(0.12, 0.38)
            box = cv.box(top, horizon, x, x + bw)
            if box is not None:
                cv.paint(box, BUILDING, _jitter(rng, _FACADES[rng.integers(len(_FACADES))], 15), 7.0)
                py, px = max(4, int(h * rng.uniform(0.06, 0.1))), max(4, int(w * rng.uniform(0.03, 0.05)))
                rows = (np.arange(box[0].start, box[0].stop) - int(top) - 2) % py < py // 2  # [h_box]
                cols = (np.arange(box[1].start, box[1].stop) - int(x) - 2) % px < px // 2  # [w_box]
                rows[-3:] = False  # no windows on the ground floor
                cv.colour[box][rows[:, None] & cols[None, :]] = _jitter(rng, _WINDOW, 10)  # [h_box, w_box] grid
        x += bw

    # Ground: tiled sidewalk everywhere below the horizon, then the road trapezoid.
    ground = np.broadcast_to(cv.yy >= horizon, (h, w))  # [H, W]
    tile_y, tile_x = max(3, int(h * rng.uniform(0.05, 0.08))), max(3, int(w * rng.uniform(0.03, 0.05)))
    joints = ground & (((cv.yy - horizon) % tile_y < 1) | (cv.xx % tile_x < 1))  # [H, W]
    side = _jitter(rng, _SIDEWALK, 12)
    cv.paint(ground, SIDEWALK, side, 8.0)
    cv.paint(joints, None, side - 35)

    vanish_x = w * rng.uniform(0.35, 0.65)
    half_far, half_near = w * rng.uniform(0.02, 0.05), w * rng.uniform(0.45, 0.8)
    depth = np.clip((cv.yy - horizon) / (h - horizon), 0, 1)  # [H, 1], 0 at the horizon, 1 at the bottom

    def road_half(t: Any) -> Any:
        return half_far + (half_near - half_far) * t

    offset = np.abs(cv.xx - vanish_x)  # [1, W]
    road = ground & (offset <= road_half(depth))  # [H, W]
    cv.paint(road, BUS_LANE if has_stop else ROAD, _jitter(rng, _ASPHALT, 12), 12.0)
    line_w = 0.6 + 1.6 * depth * w / 192  # [H, 1]
    edge_lines = road & (offset >= road_half(depth) - line_w)
    dashes = road & (offset <= line_w * 0.7) & ((1.4 / (depth + 0.15)) % 1.0 < 0.5)
    cv.paint(edge_lines | dashes, None, _jitter(rng, _MARKING, 8))

    # Trees standing at the horizon.
    for _ in range(rng.integers(0, 4)):
        cy, cx = horizon - h * rng.uniform(0.02, 0.12), w * rng.uniform(0, 1)
        ry, rx = h * rng.uniform(0.08, 0.16), w * rng.uniform(0.04, 0.09)
        crown = ((cv.yy - cy) / ry) ** 2 + ((cv.xx - cx) / rx) ** 2 <= 1  # [H, W]
        cv.paint(crown, VEGETATION, _jitter(rng, _LEAVES, 15), 22.0)

    # Cars on the road, far to near so nearer cars occlude farther ones.
    for t in np.sort(rng.uniform(0.2, 0.95, size=rng.integers(0, 4))):
        bottom = horizon + t * (h - horizon)
        cw = t * w * rng.uniform(0.2, 0.28)
        ch = cw * rng.uniform(0.55, 0.75)
        room = max(road_half(t) - cw / 2, 0.0)
        cx = vanish_x + rng.uniform(-0.6, 0.6) * room
        x0, y0 = cx - cw / 2, bottom - ch
        body = cv.box(y0, bottom, x0, x0 + cw)
        if body is None:
            continue
        cv.paint(body, CAR, _jitter(rng, _CAR_BODIES[rng.integers(len(_CAR_BODIES))], 12), 6.0)
        for part, colour in (((0.12, 0.45, 0.15, 0.85), _WINDOW), ((0.8, 1.0, 0.08, 0.3), _DARK),
                             ((0.8, 1.0, 0.7, 0.92), _DARK)):
            box = cv.box(y0 + part[0] * ch, y0 + part[1] * ch, x0 + part[2] * cw, x0 + part[3] * cw)
            if box is not None:
                cv.paint(box, None, _jitter(rng, colour, 8))

    def sidewalk_spot(t: float, width: float) -> float | None:
        """Left x of an object of ``width`` standing on a sidewalk at depth ``t``, or None."""
        left_room = (0.0, vanish_x - road_half(t) - 2 - width)
        right_room = (vanish_x + road_half(t) + 2, w - width)
        rooms = [r for r in (left_room, right_room) if r[1] >= r[0]]
        if not rooms:
            return None
        lo, hi = rooms[rng.integers(len(rooms))]
        return float(rng.uniform(lo, hi))

    # Round traffic signs (any scene) and the bus-stop panel (bus-lane scenes only).
    for _ in range(rng.choice(3, p=[0.4, 0.4, 0.2])):
        t = rng.uniform(0.05, 0.7)
        radius = w * (0.025 + 0.03 * t)
        x0 = sidewalk_spot(t, 2 * radius)
        if x0 is None:
            continue
        cy, cx = horizon + t * (h - horizon) - radius, x0 + radius
        dist = np.sqrt((cv.yy - cy) ** 2 + (cv.xx - cx) ** 2)  # [H, W]
        cv.paint(dist <= radius, TRAFFIC_SIGN, _jitter(rng, _WHITE, 10), 6.0)
        if rng.random() < 0.5:  # prohibition: red ring around white
            cv.paint((dist <= radius) & (dist > 0.65 * radius), None, _jitter(rng, _RED, 12))
        else:  # mandatory: blue disc with a white bar
            bar = (dist <= radius) & ~((np.abs(cv.yy - cy) < 0.2 * radius) & (np.abs(cv.xx - cx) < 0.6 * radius))
            cv.paint(bar, None, _jitter(rng, _BLUE, 12))
    if has_stop:
        for _ in range(20):  # there is nearly always room near the horizon; retry otherwise
            t = rng.uniform(0.05, 0.6)
            sw = w * (0.05 + 0.06 * t)
            sh = sw * rng.uniform(1.3, 1.6)
            x0 = sidewalk_spot(t, sw)
            if x0 is not None:
                break
        else:
            x0, t, sw, sh = 0.0, 0.05, w * 0.05, w * 0.07
        bottom = horizon + t * (h - horizon)
        panel = cv.box(bottom - sh, bottom, x0, x0 + sw)
        inner = cv.box(bottom - sh + 1, bottom - 1, x0 + 1, x0 + sw - 1)
        icon = cv.box(bottom - 0.75 * sh, bottom - 0.4 * sh, x0 + 0.25 * sw, x0 + 0.75 * sw)
        cv.paint(panel, BUS_STOP, _jitter(rng, _DARK, 8), 6.0)
        for box, colour in ((inner, _YELLOW), (icon, _DARK)):
            if box is not None:
                cv.paint(box, None, _jitter(rng, colour, 10))

    # Global gain and tint, then per-pixel luminance and chroma noise.
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, size=3)
    noise = (rng.standard_normal((h, w, 1), dtype=np.float32)  # [H, W, 1]
             + 0.35 * rng.standard_normal((h, w, 3), dtype=np.float32)) * cv.sigma[..., None]  # [H, W, 3]
    image = np.clip(cv.colour * gain.astype(np.float32) + noise, 0, 255).astype(np.uint8)  # [H, W, 3]
    return image, cv.labels


def _manifest_path(data_root: str, split: str) -> str:
    return os.path.join(data_root, f'manifest_{split}.json')


def _split_dirs(data_root: str, split: str) -> tuple[str, str]:
    return os.path.join(data_root, 'img_dir', split), os.path.join(data_root, 'ann_dir', split)


def _split_is_current(data_root: str, split: str, manifest: dict[str, Any]) -> bool:
    try:
        with open(_manifest_path(data_root, split)) as f:
            if json.load(f) != manifest:
                return False
    except (OSError, ValueError):
        return False
    names = {f'{i:05d}.png' for i in range(manifest['num_images'])}
    return all(os.path.isdir(d) and {n for n in os.listdir(d) if n.endswith('.png')} == names
               for d in _split_dirs(data_root, split))


@contextlib.contextmanager
def _exclusive(directory: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (POSIX) so concurrent processes generate once."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): no locking
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _encode_png(array: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode('.png', array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError('OpenCV failed to encode a PNG')
    return buf


def ensure_synthetic_split(data_root: str, split: str, num_images: int, img_size: tuple[int, int],
                           seed: int) -> bool:
    """Generate one split of SyntheticStreets unless an identical one is cached.

    Args:
        data_root: Cache directory (created if missing).
        split: ``'train'`` or ``'val'``.
        num_images: Number of images.
        img_size: ``(h, w)``.
        seed: Generator seed; image ``i`` depends only on ``(seed, split, i)`` and ``img_size``.

    Returns:
        Whether the split was (re)generated.
    """
    manifest = {'generator': 'SyntheticStreets', 'version': GENERATOR_VERSION, 'split': split,
                'seed': int(seed), 'img_size': [int(img_size[0]), int(img_size[1])],
                'num_images': int(num_images)}
    if _split_is_current(data_root, split, manifest):
        return False
    os.makedirs(data_root, exist_ok=True)
    with _exclusive(data_root):
        if _split_is_current(data_root, split, manifest):  # another process made it meanwhile
            return False
        with contextlib.suppress(FileNotFoundError):
            os.remove(_manifest_path(data_root, split))
        img_dir, ann_dir = _split_dirs(data_root, split)
        for d in (img_dir, ann_dir):
            os.makedirs(d, exist_ok=True)
            for path in glob.glob(os.path.join(d, '*.png')):
                os.remove(path)
        h, w = manifest['img_size']
        for i in range(num_images):
            image, labels = render_street_scene(np.random.default_rng([seed, _SPLIT_CODES[split], i]), h, w)
            _encode_png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)).tofile(os.path.join(img_dir, f'{i:05d}.png'))
            _encode_png(labels).tofile(os.path.join(ann_dir, f'{i:05d}.png'))
        tmp = _manifest_path(data_root, split) + f'.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, _manifest_path(data_root, split))
    return True


@DATASETS.register_module()
class SyntheticStreets(BaseSegDataset):
    """Generated street scenes (see the module docstring), cached as PNGs and read like a folder.

    Args:
        data_root: Cache directory; generated on first use.
        split: ``'train'`` or ``'val'`` (disjoint random streams).
        num_images: Number of images; ``None`` for ``DEFAULT_NUM_IMAGES[split]``.
        img_size: ``(h, w)`` of the images, each at least 32.
        seed: Generator seed; the same seed gives byte-identical files.
        pipeline: Transform configs (see :func:`seg.datasets.transforms.build_pipeline`).
        test_mode: Transform the image only; masks keep their file size.
        ignore_index: Label of ignored pixels (the scenes have none; padding uses it).
    """

    METAINFO = {'classes': SYNTHETIC_CLASSES, 'palette': SYNTHETIC_PALETTE}
    CONTEXT_PAIR = ('road', 'bus_lane')
    SPLITS = tuple(_SPLIT_CODES)
    DEFAULT_NUM_IMAGES = {'train': 600, 'val': 150}

    def __init__(self, data_root: str = 'data/synthetic', split: str = 'train', num_images: int | None = None,
                 img_size: Sequence[int] = (96, 192), seed: int = 0, pipeline: Sequence[dict] | None = None,
                 test_mode: bool = False, ignore_index: int = 255):
        if split not in self.SPLITS:
            raise ValueError(f'SyntheticStreets: split must be one of {self.SPLITS}, got {split!r}')
        num_images = self.DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f'SyntheticStreets: num_images must be a positive int, got {num_images!r}')
        if (isinstance(img_size, str) or not isinstance(img_size, Sequence) or len(img_size) != 2
                or not all(isinstance(v, int) and v >= 32 for v in img_size)):
            raise ValueError(f'SyntheticStreets: img_size must be (h, w) ints >= 32, got {img_size!r}')
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f'SyntheticStreets: seed must be a non-negative int, got {seed!r}')
        self.split, self.seed, self.img_size = split, seed, (img_size[0], img_size[1])
        ensure_synthetic_split(str(data_root), split, num_images, self.img_size, seed)
        super().__init__(
            data_root=data_root, img_dir=f'img_dir/{split}', ann_dir=f'ann_dir/{split}', img_suffix='.png',
            seg_map_suffix='.png', pipeline=pipeline, test_mode=test_mode, ignore_index=ignore_index,
            reduce_zero_label=False)
