"""Tests of seg.datasets.transforms: mmseg semantics as albumentations transforms, and build_pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from seg.datasets.transforms import (
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
    build_pipeline,
    rescale_size,
)
from seg.registry import TRANSFORMS

LABELS = {0, 1, 2, 255}


def _sample(h: int = 30, w: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.choice(np.array(sorted(LABELS), np.uint8), size=(h, w))
    return img, mask


def test_our_transforms_are_registered():
    for cls in (RandomResize, Resize, RandomCrop, PhotoMetricDistortion, Pad, RandomFlip):
        assert TRANSFORMS.get(cls.__name__) is cls


def test_unknown_name_lists_ours_and_mentions_albumentations():
    with pytest.raises(ValueError, match='NoSuchTransform') as err:
        build_pipeline([dict(type='NoSuchTransform')])
    assert 'RandomCrop' in str(err.value) and 'PhotoMetricDistortion' in str(err.value)
    assert 'albumentations' in str(err.value)


@pytest.mark.parametrize('cfg', [dict(type='Pad', size=(4, 4), colour=1), dict(type='HorizontalFlip', foo=1)])
def test_unknown_argument_is_an_error(cfg):
    with pytest.raises(ValueError, match='colour|foo'):
        build_pipeline([cfg])


@pytest.mark.parametrize('cfgs', [dict(type='Pad'), [dict(size=(2, 2))], ['Pad']])
def test_malformed_pipeline_is_an_error(cfgs):
    with pytest.raises(ValueError, match='pipeline|type'):
        build_pipeline(cfgs)


@pytest.mark.parametrize('cfg', [
    dict(type='RandomCrop', crop_size=(0, 4)), dict(type='RandomCrop', crop_size=(4, 4), cat_max_ratio=0),
    dict(type='RandomResize', ratio_range=(2.0, 1.0)), dict(type='Resize', scale=(10,)),
    dict(type='RandomFlip', prob=1.5), dict(type='PhotoMetricDistortion', contrast_range=(1.5, 0.5)),
])
def test_bad_values_are_errors(cfg):
    with pytest.raises(ValueError, match=cfg['type']):
        build_pipeline([cfg])


def test_albumentations_names_and_nested_compositions():
    img, mask = _sample()
    out = build_pipeline([dict(type='HorizontalFlip', p=1.0),
                          dict(type='OneOf', p=1.0, transforms=[dict(type='VerticalFlip', p=1.0)])])(
        image=img, mask=mask)
    np.testing.assert_array_equal(out['image'], img[::-1, ::-1])
    np.testing.assert_array_equal(out['mask'], mask[::-1, ::-1])


def test_resize_keep_ratio_fits_inside_scale():
    img, mask = _sample(30, 50)
    out = build_pipeline([dict(type='Resize', scale=(64, 32))])(image=img, mask=mask)
    # factor = min(64 / 50, 32 / 30) = 32 / 30 -> (32, 53)
    assert out['image'].shape == (32, 53, 3) and out['mask'].shape == (32, 53)
    assert set(np.unique(out['mask'])) <= LABELS and out['mask'].dtype == np.uint8


def test_resize_without_keep_ratio_uses_w_h():
    img, mask = _sample(30, 50)
    out = build_pipeline([dict(type='Resize', scale=(40, 20), keep_ratio=False)])(image=img, mask=mask)
    assert out['image'].shape == (20, 40, 3) and out['mask'].shape == (20, 40)


def test_resize_mask_is_nearest():
    mask = np.kron(np.array([[0, 1], [2, 255]], np.uint8), np.ones((5, 5), np.uint8))  # [10, 10]
    img = np.zeros((10, 10, 3), np.uint8)
    out = build_pipeline([dict(type='Resize', scale=(20, 20))])(image=img, mask=mask)
    np.testing.assert_array_equal(out['mask'], np.kron(np.array([[0, 1], [2, 255]]), np.ones((10, 10))))


def test_random_resize_ratio_bounds_and_spread():
    img, mask = _sample(40, 80)
    scale, (lo, hi) = (64, 32), (0.5, 2.0)
    pipeline = build_pipeline([dict(type='RandomResize', scale=scale, ratio_range=(lo, hi))], seed=0)
    base = min(max(scale) / 80, min(scale) / 40)
    ratios = []
    for _ in range(60):
        out = pipeline(image=img, mask=mask)
        h, w = out['mask'].shape
        assert out['image'].shape[:2] == (h, w) and set(np.unique(out['mask'])) <= LABELS
        assert w <= max(scale) * hi + 1 and h <= min(scale) * hi + 1
        ratios.append(w / (80 * base))
    ratios = np.array(ratios)
    assert ratios.min() >= lo - 0.02 and ratios.max() <= hi + 0.02
    assert ratios.min() < lo + 0.3 and ratios.max() > hi - 0.3  # the range is really sampled


def test_rescale_size_long_and_short_edge():
    assert rescale_size((100, 400), (2048, 1024), True) == (512, 2048)  # long edge binds
    assert rescale_size((300, 400), (2048, 1024), True) == (1024, 1365)  # short edge binds


def test_random_crop_honours_cat_max_ratio():
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 1  # a crop of width 20 is balanced only when it straddles the border near the middle
    img = np.zeros((40, 40, 3), np.uint8)

    def balanced_share(cat_max_ratio: float) -> float:
        pipeline = build_pipeline([dict(type='RandomCrop', crop_size=(20, 20), cat_max_ratio=cat_max_ratio)],
                                  seed=1)
        hits = 0
        for _ in range(200):
            crop = pipeline(image=img, mask=mask)['mask']
            assert crop.shape == (20, 20)
            hits += 0.25 < crop.mean() < 0.75
        return hits / 200

    assert balanced_share(0.75) > 0.95
    assert balanced_share(1.0) < 0.6  # disabled: about 9/21 of the windows are balanced


def test_random_crop_ignores_ignore_index_and_keeps_small_images():
    img, mask = _sample(10, 30)
    out = build_pipeline([dict(type='RandomCrop', crop_size=(20, 20))], seed=0)(image=img, mask=mask)
    assert out['image'].shape == (10, 20, 3) and out['mask'].shape == (10, 20)
    # Only one class besides the ignore label: the check can never pass, the crop still happens.
    mask = np.full((40, 40), 255, np.uint8)
    mask[:, :30] = 3
    crop = RandomCrop((20, 20))(image=np.zeros((40, 40, 3), np.uint8), mask=mask)['mask']
    assert crop.shape == (20, 20) and set(np.unique(crop)) <= {3, 255}


def test_pad_bottom_right_with_255():
    img, mask = _sample(10, 12)
    out = build_pipeline([dict(type='Pad', size=(16, 20), pad_val=7)])(image=img, mask=mask)
    assert out['image'].shape == (16, 20, 3) and out['mask'].shape == (16, 20)
    np.testing.assert_array_equal(out['image'][:10, :12], img)
    np.testing.assert_array_equal(out['mask'][:10, :12], mask)
    assert (out['mask'][10:] == 255).all() and (out['mask'][:, 12:] == 255).all()
    assert (out['image'][10:] == 7).all() and (out['image'][:, 12:] == 7).all()
    big = build_pipeline([dict(type='Pad', size=(4, 4))])(image=img, mask=mask)
    assert big['image'].shape == img.shape


def test_random_flip():
    img, mask = _sample()
    out = RandomFlip(prob=1.0)(image=img, mask=mask)
    np.testing.assert_array_equal(out['image'], img[:, ::-1])
    np.testing.assert_array_equal(out['mask'], mask[:, ::-1])
    out = RandomFlip(prob=0.0)(image=img, mask=mask)
    np.testing.assert_array_equal(out['image'], img)


def test_photometric_distortion_changes_image_only():
    img, mask = _sample()
    pipeline = build_pipeline([dict(type='PhotoMetricDistortion')], seed=0)
    changed = 0
    for _ in range(10):
        out = pipeline(image=img, mask=mask)
        assert out['image'].dtype == np.uint8 and out['image'].shape == img.shape
        np.testing.assert_array_equal(out['mask'], mask)
        changed += not np.array_equal(out['image'], img)
    assert changed >= 5


def test_photometric_distortion_identity_settings_keep_the_image():
    img, _ = _sample()
    t = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0)
    for _ in range(5):
        out = t(image=img)['image']
        # only the RGB -> HSV -> RGB round trip may change a pixel, by a few levels
        assert np.abs(out.astype(int) - img.astype(int)).mean() < 3


def _train_pipeline(seed: int | None):
    return build_pipeline([
        dict(type='RandomResize', scale=(64, 32), ratio_range=(0.5, 2.0)),
        dict(type='RandomCrop', crop_size=(24, 24)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='Pad', size=(24, 24)),
    ], seed=seed)


def test_every_op_keeps_mask_labels_and_sizes_in_a_full_pipeline():
    pipeline = _train_pipeline(seed=3)
    for i in range(20):
        img, mask = _sample(30 + i, 50, seed=i)
        out = pipeline(image=img, mask=mask)
        assert out['image'].shape == (24, 24, 3) and out['mask'].shape == (24, 24)
        assert set(np.unique(out['mask'])) <= LABELS


def test_determinism_under_a_seed():
    img, mask = _sample()
    a, b, c = _train_pipeline(7), _train_pipeline(7), _train_pipeline(8)
    outs_a = [a(image=img, mask=mask) for _ in range(5)]
    outs_b = [b(image=img, mask=mask) for _ in range(5)]
    outs_c = [c(image=img, mask=mask) for _ in range(5)]
    for x, y in zip(outs_a, outs_b):
        np.testing.assert_array_equal(x['image'], y['image'])
        np.testing.assert_array_equal(x['mask'], y['mask'])
    assert any(not np.array_equal(x['image'], z['image']) for x, z in zip(outs_a, outs_c))


def test_seeded_transforms_are_not_in_lockstep():
    # Two independent flips: with lockstep random states they would always cancel out.
    img, _ = _sample()
    pipeline = build_pipeline([dict(type='RandomFlip', prob=0.5), dict(type='HorizontalFlip', p=0.5)], seed=0)
    outs = [pipeline(image=img)['image'] for _ in range(30)]
    assert any(np.array_equal(o, img[:, ::-1]) for o in outs)
    assert any(np.array_equal(o, img) for o in outs)
