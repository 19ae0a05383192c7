"""Tests of the datasets (Cityscapes, ADE20K, folder, synthetic) and seg_collate.

Fixtures write tiny datasets into tmp_path in the real on-disk layouts.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import FUNCTIONS
from torch.utils.data import DataLoader

from seg.datasets import (
    ADE20KDataset,
    CityscapesDataset,
    FolderDataset,
    SyntheticStreets,
    ensure_synthetic_split,
    seg_collate,
)
from seg.registry import DATASETS


def _write(path, array: np.ndarray) -> None:
    """Write an RGB image (3-D) or a label map (2-D) with OpenCV."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), out)


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _labels(h: int, w: int, seed: int, values) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.asarray(values, np.uint8), size=(h, w))


# ---------------------------------------------------------------------------------------- Cityscapes
@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / 'cityscapes'
    files = {'train': [('aachen', 'aachen_000000_000019'), ('aachen', 'aachen_000001_000019'),
                       ('bremen', 'bremen_000000_000019')],
             'val': [('frankfurt', 'frankfurt_000000_000294')], 'test': [('berlin', 'berlin_000000_000019')]}
    for split, items in files.items():
        for i, (city, name) in enumerate(items):
            _write(root / 'leftImg8bit' / split / city / f'{name}_leftImg8bit.png', _image(16, 32, i))
            _write(root / 'gtFine' / split / city / f'{name}_gtFine_labelTrainIds.png',
                   _labels(16, 32, i, [0, 5, 18, 255]))
            _write(root / 'gtFine' / split / city / f'{name}_gtFine_labelIds.png', _labels(16, 32, i, [7, 8]))
    return root


def test_cityscapes_two_cities_and_sample_contract(cityscapes_root):
    ds = CityscapesDataset(str(cityscapes_root), split='train')
    assert len(ds) == 3 and ds.num_classes == 19
    assert [os.path.basename(p) for p, _ in ds.data_list] == [
        'aachen_000000_000019_leftImg8bit.png', 'aachen_000001_000019_leftImg8bit.png',
        'bremen_000000_000019_leftImg8bit.png']
    sample = ds[2]
    assert set(sample) == {'inputs', 'data_samples'}
    inputs, meta = sample['inputs'], sample['data_samples']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 16, 32)
    assert set(meta) == {'gt_sem_seg', 'img_path', 'seg_map_path', 'ori_shape', 'img_shape'}
    assert meta['gt_sem_seg'].dtype == torch.int64 and meta['gt_sem_seg'].shape == (16, 32)
    assert meta['ori_shape'] == (16, 32) and meta['img_shape'] == (16, 32)
    assert meta['seg_map_path'].endswith(os.path.join('bremen', 'bremen_000000_000019_gtFine_labelTrainIds.png'))
    # RGB order and exact label values from the files
    np.testing.assert_array_equal(inputs.permute(1, 2, 0).numpy(), _image(16, 32, 2))
    np.testing.assert_array_equal(meta["gt_sem_seg"].numpy(), _labels(16, 32, 2, [0, 5, 18, 255]))
    info = ds.metainfo
    assert set(info) == {'classes', 'palette', 'ignore_index', 'reduce_zero_label'}
    assert info['classes'][0] == 'road' and info['classes'][-1] == 'bicycle' and len(info['palette']) == 19
    assert info['palette'][0] == (128, 64, 128) and info['ignore_index'] == 255
    assert info['reduce_zero_label'] is False


def test_cityscapes_val_and_test_splits(cityscapes_root):
    assert len(CityscapesDataset(str(cityscapes_root), split='val')) == 1
    test = CityscapesDataset(str(cityscapes_root), split='test', test_mode=True)
    meta = test[0]['data_samples']
    assert 'gt_sem_seg' not in meta and meta['seg_map_path'] is None


def test_cityscapes_missing_train_ids_names_the_script(cityscapes_root):
    os.remove(cityscapes_root / 'gtFine/train/bremen/bremen_000000_000019_gtFine_labelTrainIds.png')
    with pytest.raises(FileNotFoundError) as err:
        CityscapesDataset(str(cityscapes_root), split='train')
    msg = str(err.value)
    assert 'bremen_000000_000019_gtFine_labelTrainIds.png' in msg and 'csCreateTrainIdLabelImgs' in msg
    assert f'CITYSCAPES_DATASET={cityscapes_root}' in msg


def test_cityscapes_bad_split_and_missing_split_dir(cityscapes_root, tmp_path):
    with pytest.raises(ValueError, match="'training'"):
        CityscapesDataset(str(cityscapes_root), split='training')
    with pytest.raises(FileNotFoundError, match='does_not_exist'):
        CityscapesDataset(str(tmp_path / 'does_not_exist'))
    os.rename(cityscapes_root / 'leftImg8bit' / 'val', cityscapes_root / 'leftImg8bit' / 'val_moved')
    with pytest.raises(FileNotFoundError, match=os.path.join('leftImg8bit', 'val')):
        CityscapesDataset(str(cityscapes_root), split='val')


# ---------------------------------------------------------------------------------------- ADE20K
@pytest.fixture
def ade_root(tmp_path):
    root = tmp_path / 'ADEChallengeData2016'
    for split, n in (('training', 3), ('validation', 2)):
        for i in range(n):
            name = f'ADE_{"train" if split == "training" else "val"}_{i + 1:08d}'
            _write(root / 'images' / split / f'{name}.jpg', _image(20, 24, i))
            _write(root / 'annotations' / split / f'{name}.png', _labels(20, 24, i, [0, 1, 2, 150]))
    return root


def test_ade20k_reduce_zero_label(ade_root):
    ds = ADE20KDataset(str(ade_root), split='training')
    assert len(ds) == 3 and ds.num_classes == 150 and len(set(ds.metainfo['palette'])) == 150
    assert ds.metainfo['reduce_zero_label'] is True and ds.metainfo['classes'][:3] == ('wall', 'building', 'sky')
    raw = _labels(20, 24, 1, [0, 1, 2, 150])
    gt = ds[1]['data_samples']['gt_sem_seg'].numpy()
    np.testing.assert_array_equal(gt, np.where(raw == 0, 255, raw.astype(int) - 1))
    assert set(np.unique(gt)) == {0, 1, 149, 255}
    assert len(ADE20KDataset(str(ade_root), split='validation')) == 2


def test_ade20k_without_reduce_zero_label_rejects_150(ade_root):
    ds = ADE20KDataset(str(ade_root), split='training', reduce_zero_label=False)
    with pytest.raises(ValueError) as err:
        ds[0]
    assert 'ADE_train_00000001.png' in str(err.value) and '[150]' in str(err.value)


def test_ade20k_parent_dir_hint(ade_root):
    with pytest.raises(FileNotFoundError, match='ADEChallengeData2016'):
        ADE20KDataset(str(ade_root.parent), split='training')


# ---------------------------------------------------------------------------------------- folder
@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / 'mydata'
    for i, stem in enumerate(['b', 'a', 'sub/c']):
        _write(root / 'imgs' / f'{stem}.png', _image(12, 18, i))
        _write(root / 'masks' / f'{stem}.png', _labels(12, 18, i, [0, 1, 2, 255]))
    return root


def test_folder_pairs_by_stem_including_subdirs(folder_root):
    ds = FolderDataset(str(folder_root), img_dir='imgs', ann_dir='masks', classes=('x', 'y', 'z'),
                       img_suffix='.png')
    assert len(ds) == 3 and ds.num_classes == 3 and len(ds.metainfo['palette']) == 3
    for img_path, seg_path in ds.data_list:
        stem = os.path.relpath(img_path, folder_root / 'imgs')
        assert os.path.relpath(seg_path, folder_root / 'masks') == stem
    sample = ds[0]  # 'a', written second
    np.testing.assert_array_equal(sample['data_samples']['gt_sem_seg'].numpy(), _labels(12, 18, 1, [0, 1, 2, 255]))


def test_folder_images_only(folder_root):
    ds = FolderDataset(str(folder_root), img_dir='imgs', ann_dir=None, classes=('x', 'y', 'z'), img_suffix='.png')
    meta = ds[0]['data_samples']
    assert 'gt_sem_seg' not in meta and meta['seg_map_path'] is None


def test_folder_reduce_zero_label(folder_root):
    ds = FolderDataset(str(folder_root), img_dir='imgs', ann_dir='masks', classes=('x', 'y'), img_suffix='.png',
                       reduce_zero_label=True)
    gt = ds[0]['data_samples']['gt_sem_seg'].numpy()
    raw = _labels(12, 18, 1, [0, 1, 2, 255])
    np.testing.assert_array_equal(gt, np.where((raw == 0) | (raw == 255), 255, raw.astype(int) - 1))


def test_test_mode_keeps_mask_size_train_mode_transforms_both(folder_root):
    kw = dict(img_dir='imgs', ann_dir='masks', classes=('x', 'y', 'z'), img_suffix='.png',
              pipeline=[dict(type='Resize', scale=(36, 24), keep_ratio=True)])
    train = FolderDataset(str(folder_root), **kw)[0]
    assert train['inputs'].shape == (3, 24, 36) and train['data_samples']['gt_sem_seg'].shape == (24, 36)
    assert train['data_samples']['img_shape'] == (24, 36) and train['data_samples']['ori_shape'] == (12, 18)
    test = FolderDataset(str(folder_root), test_mode=True, **kw)[0]
    assert test['inputs'].shape == (3, 24, 36) and test['data_samples']['gt_sem_seg'].shape == (12, 18)
    assert test['data_samples']['img_shape'] == (24, 36) and test['data_samples']['ori_shape'] == (12, 18)


def test_uint16_masks_and_registry_build(tmp_path):
    _write(tmp_path / 'i' / 'x.png', _image(8, 8, 0))
    mask = np.full((8, 8), 300, np.uint16)
    mask[:4] = 1
    _write(tmp_path / 'm' / 'x.png', mask)
    ds = DATASETS.build(dict(type='FolderDataset', data_root=str(tmp_path), img_dir='i', ann_dir='m',
                             classes=('a', 'b'), img_suffix='.png', ignore_index=300))
    assert isinstance(ds, FolderDataset)
    assert set(ds[0]['data_samples']['gt_sem_seg'].unique().tolist()) == {1, 300}


# ---------------------------------------------------------------------------------------- bad input
def _folder(root, **kw) -> FolderDataset:
    args = dict(img_dir='imgs', ann_dir='masks', classes=('x', 'y', 'z'), img_suffix='.png')
    args.update(kw)
    return FolderDataset(str(root), **args)


def test_missing_data_root_and_dirs(folder_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        _folder(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='no_imgs'):
        _folder(folder_root, img_dir='no_imgs')
    with pytest.raises(FileNotFoundError, match='no_masks'):
        _folder(folder_root, ann_dir='no_masks')


def test_no_images_found_names_suffix_and_what_is_there(folder_root):
    with pytest.raises(FileNotFoundError) as err:
        _folder(folder_root, img_suffix='.jpg')
    assert "'.jpg'" in str(err.value) and '.png' in str(err.value) and 'imgs' in str(err.value)


def test_image_without_mask(folder_root):
    os.remove(folder_root / 'masks' / 'sub' / 'c.png')
    with pytest.raises(FileNotFoundError, match=r'1 of 3 .*c\.png'):
        _folder(folder_root)


def test_size_mismatch_names_both_files_and_sizes(folder_root):
    _write(folder_root / 'masks' / 'a.png', np.zeros((6, 9), np.uint8))
    with pytest.raises(ValueError) as err:
        _folder(folder_root)[0]
    msg = str(err.value)
    assert str(folder_root / 'imgs' / 'a.png') in msg and str(folder_root / 'masks' / 'a.png') in msg
    assert '12x18' in msg and '6x9' in msg


def test_bad_mask_values_name_file_and_values(folder_root):
    bad = _labels(12, 18, 0, [0, 1, 7, 9, 255])
    _write(folder_root / 'masks' / 'a.png', bad)
    with pytest.raises(ValueError) as err:
        _folder(folder_root)[0]
    assert 'a.png' in str(err.value) and '[7, 9]' in str(err.value) and 'ignore_index=255' in str(err.value)


def test_unreadable_image_and_colour_mask(folder_root):
    (folder_root / 'imgs' / 'a.png').write_bytes(b'not a png at all')
    with pytest.raises(ValueError, match=r'cannot read image file .*a\.png'):
        _folder(folder_root)[0]
    (folder_root / 'imgs' / 'a.png').write_bytes(b'')
    with pytest.raises(ValueError, match=r'cannot read image file .*a\.png: empty'):
        _folder(folder_root)[0]
    _write(folder_root / 'masks' / 'b.png', _image(12, 18, 0))
    with pytest.raises(ValueError, match=r'b\.png must be a single-channel'):
        _folder(folder_root)[1]


def test_bad_metainfo_arguments(folder_root):
    with pytest.raises(ValueError, match='classes'):
        _folder(folder_root, classes=())
    with pytest.raises(ValueError, match='palette'):
        _folder(folder_root, palette=[(0, 0, 0)])
    with pytest.raises(ValueError, match='ignore_index'):
        _folder(folder_root, ignore_index=1)


# ---------------------------------------------------------------------------------------- collate
def test_seg_collate_in_a_dataloader(folder_root):
    assert FUNCTIONS.get('seg_collate') is seg_collate
    ds = _folder(folder_root, test_mode=True, pipeline=[dict(type='Resize', scale=(36, 24))])
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=seg_collate)))
    assert set(batch) == {'inputs', 'data_samples'}
    assert len(batch['inputs']) == 2 and len(batch['data_samples']) == 2
    assert batch['inputs'][1].shape == (3, 24, 36) and batch['data_samples'][1]['gt_sem_seg'].shape == (12, 18)
    with pytest.raises(ValueError, match='sample 1'):
        seg_collate([ds[0], {'inputs': 1}])


def test_dataloader_workers_do_not_replay_augmentations(tmp_path):
    img = _image(4, 6, 0)
    for i in range(32):
        _write(tmp_path / 'imgs' / f'{i:02d}.png', img)
    ds = FolderDataset(str(tmp_path), img_dir='imgs', classes=('x',), img_suffix='.png',
                       pipeline=[dict(type='RandomFlip', prob=0.5)])

    def flips() -> list[bool]:
        torch.manual_seed(123)
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=seg_collate)
        return [not np.array_equal(b['inputs'][0].permute(1, 2, 0).numpy(), img) for b in loader]

    first = flips()
    assert first == flips()  # reproducible under torch.manual_seed
    # worker 0 loads the even indices, worker 1 the odd ones; identical worker states would pair them up
    assert first[0::2] != first[1::2] and 4 <= sum(first) <= 28


# ---------------------------------------------------------------------------------------- synthetic
def _files(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = open(path, 'rb').read()
    return out


def test_synthetic_is_deterministic_and_cached(tmp_path):
    kw = dict(split='train', num_images=5, img_size=(48, 96))
    a = SyntheticStreets(str(tmp_path / 'a'), seed=1, **kw)
    SyntheticStreets(str(tmp_path / 'b'), seed=1, **kw)
    SyntheticStreets(str(tmp_path / 'c'), seed=2, **kw)
    files_a, files_b, files_c = (_files(tmp_path / r) for r in 'abc')
    pngs = sorted(k for k in files_a if k.endswith('.png'))
    assert sorted(files_a) == sorted(pngs + ['manifest_train.json']) and len(pngs) == 10
    assert files_a == files_b
    assert all(files_a[k] != files_c[k] for k in pngs)
    assert len(a) == 5 and a[0]['inputs'].shape == (3, 48, 96) and a.CONTEXT_PAIR == ('road', 'bus_lane')
    manifest = json.loads(files_a['manifest_train.json'])
    assert manifest['seed'] == 1 and manifest['num_images'] == 5 and manifest['img_size'] == [48, 96]
    # cached: same request generates nothing; a different one regenerates
    assert not ensure_synthetic_split(str(tmp_path / 'a'), 'train', 5, (48, 96), 1)
    assert len(SyntheticStreets(str(tmp_path / 'a'), seed=1, split='train', num_images=3, img_size=(48, 96))) == 3
    assert len(os.listdir(tmp_path / 'a' / 'img_dir' / 'train')) == 3
    os.remove(tmp_path / 'a' / 'ann_dir' / 'train' / '00001.png')  # a damaged cache is regenerated too
    assert ensure_synthetic_split(str(tmp_path / 'a'), 'train', 3, (48, 96), 1)
    val = SyntheticStreets(str(tmp_path / 'b'), split='val', seed=1, num_images=5, img_size=(48, 96))
    assert open(val.data_list[0][0], 'rb').read() != files_b[os.path.join('img_dir', 'train', '00000.png')]


def test_synthetic_bad_arguments(tmp_path):
    for kw in (dict(split='test'), dict(num_images=0), dict(img_size=(16, 96)), dict(seed=-1)):
        with pytest.raises(ValueError, match=next(iter(kw))):
            SyntheticStreets(str(tmp_path), **kw)


def test_synthetic_context_pair_looks_alike_and_follows_the_sign(tmp_path):
    ds = SyntheticStreets(str(tmp_path), split='train', num_images=40, img_size=(64, 128), seed=0)
    classes = ds.metainfo['classes']
    assert len(classes) >= 6 and len(ds.metainfo['palette']) == len(classes)
    road, lane = (classes.index(c) for c in ds.CONTEXT_PAIR)
    stop, sidewalk = classes.index('bus_stop'), classes.index('sidewalk')
    pixels = {road: [], lane: [], sidewalk: []}
    scenes_with_lane = 0
    for i in range(len(ds)):
        sample = ds[i]
        img, gt = sample['inputs'].permute(1, 2, 0).numpy(), sample['data_samples']['gt_sem_seg'].numpy()
        present = set(np.unique(gt).tolist())
        assert present <= set(range(len(classes)))
        assert not {road, lane} <= present  # one surface class per scene...
        assert (lane in present) == (stop in present)  # ...decided by the bus-stop panel
        scenes_with_lane += lane in present
        for c in pixels:
            pixels[c].append(img[gt == c].astype(np.float64))
    assert 10 <= scenes_with_lane <= 30  # both classes occur
    stats = {c: (np.concatenate(p).mean(0), np.concatenate(p).std(0)) for c, p in pixels.items()}
    assert np.abs(stats[road][0] - stats[lane][0]).max() < 8
    assert np.all(np.abs(stats[road][1] / stats[lane][1] - 1) < 0.15)
    assert np.abs(stats[road][0] - stats[sidewalk][0]).max() > 30  # the statistic does tell classes apart
