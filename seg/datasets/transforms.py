"""Albumentations transforms with mmsegmentation's semantics, and the pipeline builder.

The training recipe of mmsegmentation (random resize, crop with ``cat_max_ratio``, flip,
photometric distortion, pad) written as albumentations 2.x transforms, so that one
``albumentations.Compose`` carries our transforms and any of albumentations' own.

Conventions (as in mmseg): ``scale`` is ``(w, h)`` and with ``keep_ratio=True`` means "long edge at
most ``max(scale)``, short edge at most ``min(scale)``"; ``crop_size`` and ``Pad.size`` are
``(h, w)``. Images are ``uint8`` ``[H, W, 3]`` RGB arrays, masks ``[H, W]`` integer label maps; every
geometric op uses nearest-neighbour on masks, so a mask only ever holds labels it held before, plus
the pad value.

Randomness: albumentations 2.0 gives every transform of a seeded ``Compose`` its own generator with
the *same* seed, which keeps all transforms in lockstep (two flips with ``p=0.5`` always agree).
:func:`reseed_pipeline` instead shares one generator pair across the whole pipeline.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from seg.registry import TRANSFORMS

__all__ = [
    'Pad', 'PhotoMetricDistortion', 'RandomCrop', 'RandomFlip', 'RandomResize', 'Resize',
    'build_pipeline', 'reseed_pipeline', 'rescale_size',
]


def _pair_of_positive_ints(value: Any, name: str, owner: str) -> tuple[int, int]:
    """Validate a ``(a, b)`` pair of positive ints given by the user."""
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                       for v in value)):
        raise ValueError(f'{owner}: {name} must be a pair of positive ints, got {value!r}')
    return int(value[0]), int(value[1])


def rescale_size(hw: tuple[int, int], scale: tuple[float, float], keep_ratio: bool) -> tuple[int, int]:
    """Output size ``(h, w)`` of resizing an image of size ``hw`` to ``scale``.

    Args:
        hw: Input ``(h, w)``.
        scale: Target ``(w, h)``. With ``keep_ratio`` only its long and short edges matter.
        keep_ratio: Keep the aspect ratio and fit inside ``scale`` (long edge <= ``max(scale)``,
            short edge <= ``min(scale)``), else resize to exactly ``scale``.

    Returns:
        The output ``(h, w)``, each at least 1.
    """
    h, w = hw
    if not keep_ratio:
        return max(int(scale[1] + 0.5), 1), max(int(scale[0] + 0.5), 1)
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(int(h * factor + 0.5), 1), max(int(w * factor + 0.5), 1)


def _resize(img: np.ndarray, hw: tuple[int, int], interpolation: int) -> np.ndarray:
    if img.shape[:2] == tuple(hw):
        return img
    return cv2.resize(img, (hw[1], hw[0]), interpolation=interpolation)


class _ResizeBase(A.DualTransform):
    """Shared apply methods of :class:`Resize` and :class:`RandomResize` (param ``out_hw``)."""

    def apply(self, img: np.ndarray, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        return _resize(img, out_hw, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        return _resize(mask, out_hw, cv2.INTER_NEAREST)


@TRANSFORMS.register_module()
class Resize(_ResizeBase):
    """Deterministic resize (test pipelines); image bilinear, mask nearest.

    Args:
        scale: Target ``(w, h)``; with ``keep_ratio`` the image is fitted inside it (see
            :func:`rescale_size`).
        keep_ratio: Keep the aspect ratio.
    """

    def __init__(self, scale: tuple[int, int], keep_ratio: bool = True):
        super().__init__(p=1.0)
        self.scale = _pair_of_positive_ints(scale, 'scale', 'Resize')
        self.keep_ratio = bool(keep_ratio)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {'out_hw': rescale_size(params['shape'][:2], self.scale, self.keep_ratio)}


@TRANSFORMS.register_module()
class RandomResize(_ResizeBase):
    """Resize to ``scale * r`` with ``r ~ U(ratio_range)``; image bilinear, mask nearest.

    Args:
        scale: Base ``(w, h)``. With ``keep_ratio`` the output has long edge <= ``max(scale) * r``
            and short edge <= ``min(scale) * r`` (one of them equal, up to rounding).
        ratio_range: ``(low, high)`` range of ``r``, ``0 < low <= high``.
        keep_ratio: Keep the aspect ratio, else resize to exactly ``(w, h) * r``.
    """

    def __init__(self, scale: tuple[int, int] = (2048, 1024),
                 ratio_range: tuple[float, float] = (0.5, 2.0), keep_ratio: bool = True):
        super().__init__(p=1.0)
        self.scale = _pair_of_positive_ints(scale, 'scale', 'RandomResize')
        if (not isinstance(ratio_range, Sequence) or len(ratio_range) != 2
                or not 0 < ratio_range[0] <= ratio_range[1]):
            raise ValueError(f'RandomResize: ratio_range must be (low, high) with 0 < low <= high, '
                             f'got {ratio_range!r}')
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.keep_ratio = bool(keep_ratio)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        ratio = self.py_random.uniform(*self.ratio_range)
        scale = (self.scale[0] * ratio, self.scale[1] * ratio)
        return {'ratio': ratio, 'out_hw': rescale_size(params['shape'][:2], scale, self.keep_ratio)}


@TRANSFORMS.register_module()
class RandomCrop(A.DualTransform):
    """Random crop that avoids crops dominated by one class (mmseg semantics).

    A crop window is drawn uniformly; while one class (``ignore_index`` excluded) covers
    ``cat_max_ratio`` or more of the window's labelled pixels, or fewer than two classes are present,
    a new window is drawn, at most 10 times; the last window drawn is used. An image smaller than
    ``crop_size`` is cropped to its own size along that side (pad it afterwards).

    Args:
        crop_size: ``(h, w)`` of the crop.
        cat_max_ratio: Largest share one class may take; ``1.0`` disables the check.
        ignore_index: Label excluded from the class shares.
    """

    def __init__(self, crop_size: tuple[int, int], cat_max_ratio: float = 0.75, ignore_index: int = 255):
        super().__init__(p=1.0)
        self.crop_size = _pair_of_positive_ints(crop_size, 'crop_size', 'RandomCrop')
        if not 0.0 < float(cat_max_ratio) <= 1.0:
            raise ValueError(f'RandomCrop: cat_max_ratio must be in (0, 1], got {cat_max_ratio!r}')
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)

    def _window(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        y0 = self.py_random.randint(0, h - ch)
        x0 = self.py_random.randint(0, w - cw)
        return y0, y0 + ch, x0, x0 + cw

    def _balanced(self, mask: np.ndarray, window: tuple[int, int, int, int]) -> bool:
        y0, y1, x0, x1 = window
        labels, counts = np.unique(mask[y0:y1, x0:x1], return_counts=True)
        counts = counts[labels != self.ignore_index]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params['shape'][:2]
        window = self._window(h, w)
        mask = data.get('mask')
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(10):
                if self._balanced(mask, window):
                    break
                window = self._window(h, w)
        return {'window': window}

    def apply(self, img: np.ndarray, window: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        y0, y1, x0, x1 = window
        return img[y0:y1, x0:x1]

    def apply_to_mask(self, mask: np.ndarray, window: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        y0, y1, x0, x1 = window
        return mask[y0:y1, x0:x1]


@TRANSFORMS.register_module()
class RandomFlip(A.DualTransform):
    """Horizontal flip with probability ``prob``.

    Args:
        prob: Probability of flipping.
    """

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f'RandomFlip: prob must be in [0, 1], got {prob!r}')
        super().__init__(p=float(prob))
        self.prob = float(prob)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return np.ascontiguousarray(img[:, ::-1])

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return np.ascontiguousarray(mask[:, ::-1])


@TRANSFORMS.register_module()
class Pad(A.DualTransform):
    """Pad bottom and right up to at least ``size``; larger sides are left as they are.

    Args:
        size: Minimum ``(h, w)``.
        pad_val: Fill value of the image.
        seg_pad_val: Fill value of the mask (the ignore index, so padding is never a class).
    """

    def __init__(self, size: tuple[int, int], pad_val: int = 0, seg_pad_val: int = 255):
        super().__init__(p=1.0)
        self.size = _pair_of_positive_ints(size, 'size', 'Pad')
        self.pad_val = pad_val
        self.seg_pad_val = int(seg_pad_val)

    def _pad(self, arr: np.ndarray, value: Any) -> np.ndarray:
        bottom = max(self.size[0] - arr.shape[0], 0)
        right = max(self.size[1] - arr.shape[1], 0)
        if bottom == 0 and right == 0:
            return arr
        widths = ((0, bottom), (0, right)) + ((0, 0),) * (arr.ndim - 2)
        return np.pad(arr, widths, mode='constant', constant_values=value)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return self._pad(img, self.pad_val)

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        if self.seg_pad_val > np.iinfo(mask.dtype).max:
            raise ValueError(f'Pad: seg_pad_val={self.seg_pad_val} does not fit the mask dtype {mask.dtype}')
        return self._pad(mask, self.seg_pad_val)


@TRANSFORMS.register_module()
class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmseg's photometric distortion of a ``uint8`` RGB image; each step applies with p=0.5.

    Order: brightness, then (with p=0.5 each) contrast first or last around the HSV steps
    saturation and hue.

    Args:
        brightness_delta: Added brightness drawn from ``U(-delta, delta)``.
        contrast_range: Contrast factor range.
        saturation_range: Saturation factor range.
        hue_delta: Hue shift (OpenCV units, 180 per turn) drawn from ``[-delta, delta]``.
    """

    def __init__(self, brightness_delta: int = 32, contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18):
        super().__init__(p=1.0)
        for name, rng in (('contrast_range', contrast_range), ('saturation_range', saturation_range)):
            if not isinstance(rng, Sequence) or len(rng) != 2 or not 0 <= rng[0] <= rng[1]:
                raise ValueError(f'PhotoMetricDistortion: {name} must be (low, high) with 0 <= low <= high, '
                                 f'got {rng!r}')
        if brightness_delta < 0 or hue_delta < 0:
            raise ValueError(f'PhotoMetricDistortion: deltas must be >= 0, got brightness_delta='
                             f'{brightness_delta!r}, hue_delta={hue_delta!r}')
        self.brightness_delta = brightness_delta
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = int(hue_delta)

    def get_params(self) -> dict[str, Any]:
        r = self.py_random

        def maybe(draw: Any) -> Any:
            return draw() if r.random() < 0.5 else None

        brightness = maybe(lambda: r.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = r.random() < 0.5
        contrast = maybe(lambda: r.uniform(*self.contrast_range))
        saturation = maybe(lambda: r.uniform(*self.saturation_range))
        hue = maybe(lambda: r.randint(-self.hue_delta, self.hue_delta))
        return {'brightness': brightness, 'contrast_first': contrast_first, 'contrast': contrast,
                'saturation': saturation, 'hue': hue}

    @staticmethod
    def _affine(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        lut = np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8)
        return cv2.LUT(img, lut)

    def apply(self, img: np.ndarray, brightness: float | None = None, contrast_first: bool = True,
              contrast: float | None = None, saturation: float | None = None, hue: int | None = None,
              **params: Any) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'PhotoMetricDistortion expects a uint8 [H, W, 3] image, got {img.dtype} '
                             f'{img.shape}')
        if brightness is not None:
            img = self._affine(img, 1.0, brightness)
        if contrast is not None and contrast_first:
            img = self._affine(img, contrast, 0.0)
        if saturation is not None or hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # [H, W, 3], H in [0, 180)
            if saturation is not None:
                hsv[..., 1] = self._affine(hsv[..., 1], saturation, 0.0)
            if hue is not None:
                hue_lut = ((np.arange(256) + hue) % 180).astype(np.uint8)
                hsv[..., 0] = cv2.LUT(hsv[..., 0], hue_lut)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if contrast is not None and not contrast_first:
            img = self._affine(img, contrast, 0.0)
        return img


def _register_albumentations() -> None:
    """Register every albumentations transform class under its own name (ours win a clash: ``Resize``,
    ``RandomCrop``, ``Pad``), so that a pipeline names registered types only, as every config does."""
    for name in dir(A):
        cls = getattr(A, name)
        if (not name.startswith('_') and isinstance(cls, type) and issubclass(cls, (A.BasicTransform, A.BaseCompose))
                and name not in TRANSFORMS.module_dict):
            TRANSFORMS.register_module(name=name, module=cls)


def _own_transforms() -> list[str]:
    return sorted(n for n, c in TRANSFORMS.module_dict.items() if c.__module__ == __name__)


def _transform_class(name: str) -> type:
    """The transform registered as ``name`` (ours, else albumentations'); ValueError listing ours otherwise."""
    cls = TRANSFORMS.module_dict.get(name) if isinstance(name, str) else None
    if cls is not None:
        return cls
    raise ValueError(f'unknown transform type {name!r}; ours are: {", ".join(_own_transforms())}; '
                     f'any albumentations transform name (e.g. HorizontalFlip, ColorJitter) is also accepted')


def _build_transform(cfg: Any) -> A.BasicTransform | A.BaseCompose:
    if isinstance(cfg, (A.BasicTransform, A.BaseCompose)):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'a pipeline entry must be a dict with a "type" key, got {cfg!r}')
    kwargs = dict(cfg)
    name = kwargs.pop('type')
    cls = _transform_class(name)
    if issubclass(cls, A.BaseCompose) and 'transforms' in kwargs:  # OneOf, SomeOf, Sequential, ...
        kwargs['transforms'] = [_build_transform(c) for c in kwargs['transforms']]
    try:
        with warnings.catch_warnings():  # albumentations warns on unknown arguments; we raise below
            warnings.simplefilter('ignore', UserWarning)
            transform = cls(**kwargs)
    except TypeError as err:
        raise ValueError(f'cannot build transform {cfg!r}: {err}') from err
    invalid = getattr(transform, 'invalid_args', None)
    if invalid:
        raise ValueError(f'transform {name!r} got unknown argument(s) {invalid}; config was {cfg!r}')
    return transform


_register_albumentations()


def reseed_pipeline(pipeline: A.BaseCompose, seed: int) -> None:
    """Seed a pipeline with one generator pair shared by all its transforms (no lockstep).

    Args:
        pipeline: The composed pipeline; changed in place.
        seed: Any non-negative int.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_pipeline(cfgs: Sequence[dict] | None, seed: int | None = None) -> A.Compose:
    """Build an ``albumentations.Compose`` from transform configs.

    Each entry is ``dict(type=NAME, **kwargs)``; ``NAME`` is looked up in ``TRANSFORMS`` (ours) first,
    then in the albumentations namespace (e.g. ``dict(type='HorizontalFlip', p=0.5)``). Composition
    types (``OneOf``, ``SomeOf``, ...) take their ``transforms`` as a list of such dicts. Built
    transform objects are accepted as they are.

    Args:
        cfgs: The transform configs, in order; ``None`` or empty for the identity.
        seed: Seed of the pipeline's random state (see :func:`reseed_pipeline`); ``None`` for fresh
            entropy.

    Returns:
        The composed pipeline; call it as ``pipeline(image=img, mask=mask)``.

    Raises:
        ValueError: An entry is not a dict with ``type``, names an unknown transform, or has
            arguments the transform does not take.
    """
    if cfgs is not None and (isinstance(cfgs, (str, dict)) or not isinstance(cfgs, Sequence)):
        raise ValueError(f'pipeline must be a list of transform dicts, got {cfgs!r}')
    pipeline = A.Compose([_build_transform(c) for c in (cfgs or [])])
    if seed is not None:
        reseed_pipeline(pipeline, seed)
    return pipeline
