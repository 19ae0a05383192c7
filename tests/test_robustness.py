"""Bad input gets a clear error naming the file, key or value (docs/robustness.md lists every case)."""
import logging
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from seg.datasets import FolderDataset, read_image, seg_collate
from seg.datasets.base import CorruptFileError
from seg.engine.config import load_config
from seg.engine.loops import report_worker_crash
from seg.fileio import ensure_dir, output_path
from seg.worker_reports import note_reading

from .conftest import ROOT

ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')


def folder(root, n=4, h=16, w=24, classes=3):
    rng = np.random.default_rng(0)
    (root / 'img').mkdir(parents=True, exist_ok=True)
    (root / 'ann').mkdir(exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / 'img' / f'{i}.png'), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(root / 'ann' / f'{i}.png'), rng.integers(0, classes, (h, w), dtype=np.uint8))
    return root


def dataset(root, **kw):
    return FolderDataset(str(root), 'img', 'ann', classes=['a', 'b', 'c'], img_suffix='.png', **kw)


def test_mask_without_image_is_reported(tmp_path, caplog):
    root = folder(tmp_path)
    cv2.imwrite(str(root / 'ann' / 'orphan.png'), np.zeros((16, 24), np.uint8))
    with caplog.at_level(logging.WARNING, logger='seg.datasets.base'):
        ds = dataset(root)
    assert len(ds) == 4
    assert any('1 mask(s)' in r.message and 'orphan.png' in r.message for r in caplog.records)


def test_image_formats_read_as_rgb_uint8(tmp_path):
    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    cv2.imwrite(str(tmp_path / 'g16.png'), grey16)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 10  # red in BGRA, nearly transparent
    cv2.imwrite(str(tmp_path / 'rgba.png'), rgba)
    cv2.imwrite(str(tmp_path / 'grey.png'), np.full((3, 4), 77, np.uint8))
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode='P')
    pal.putpalette([10, 20, 30, 200, 0, 0])
    pal.save(tmp_path / 'pal.png')
    g16 = read_image(str(tmp_path / 'g16.png'))
    assert g16.dtype == np.uint8 and g16.shape == (3, 4, 3) and (g16[..., 0] == grey16 >> 8).all()
    assert (read_image(str(tmp_path / 'rgba.png'))[0, 0] == [200, 0, 0]).all()  # alpha dropped
    assert (read_image(str(tmp_path / 'grey.png')) == 77).all()
    assert (read_image(str(tmp_path / 'pal.png'))[0, 1] == [200, 0, 0]).all()  # palette expanded


def test_palette_masks_are_read_as_their_indices(tmp_path):
    root = folder(tmp_path, n=1)
    labels = np.random.default_rng(1).integers(0, 3, (16, 24), dtype=np.uint8)
    mask = Image.fromarray(labels, mode='P')
    mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])  # VOC-style colours
    mask.save(root / 'ann' / '0.png')
    assert (dataset(root)[0]['data_samples']['gt_sem_seg'].numpy() == labels).all()


def test_corrupt_file_in_training_stops_or_skips(tmp_path, caplog):
    root = folder(tmp_path)
    (root / 'img' / '1.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    with pytest.raises(CorruptFileError, match=r'cannot read image file .*1\.png'):
        dataset(root)[1]
    ds = dataset(root, on_bad_file='skip')
    with caplog.at_level(logging.WARNING, logger='seg.datasets.base'):
        sample = ds[1]
        ds[1]
    assert sample['data_samples']['img_path'].endswith('2.png')  # the next sample instead
    assert ds.skipped == 2
    assert any('2 file(s) skipped so far' in r.message for r in caplog.records)
    with pytest.raises(ValueError, match="on_bad_file must be 'stop' or 'skip'"):
        dataset(root, on_bad_file='ignore')


class _Bomb(FolderDataset):
    """Kills the DataLoader worker reading bomb.png, as a segfault in a decoder would."""

    def load_image(self, path):
        note_reading(path)
        if path.endswith('bomb.png'):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().load_image(path)


def test_crashed_worker_is_reported_with_the_file_it_was_reading(tmp_path):
    root = folder(tmp_path, n=2)
    os.replace(root / 'img' / '1.png', root / 'img' / 'bomb.png')
    os.replace(root / 'ann' / '1.png', root / 'ann' / 'bomb.png')
    ds = _Bomb(str(root), 'img', 'ann', classes=['a', 'b', 'c'], img_suffix='.png')
    loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=seg_collate)
    with pytest.raises(RuntimeError, match=r'worker pid \d+ was reading .*bomb\.png'):
        with report_worker_crash():
            for _ in loader:
                pass


def test_unknown_config_key_lists_the_valid_ones(tmp_path):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = ['{ROOT}/configs/demo_ccnet.py']\nmodel = dict(decode_head=dict(recurence=1))\n")
    with pytest.raises(ValueError, match=r'model\.decode_head \(CCHead\) has unknown key\(s\) recurence; '
                                         r'valid keys are: .*recurrence'):
        load_config(str(config))


@pytest.mark.parametrize('option, message', [
    ({'train_cfg.max_iters': 'abc'}, r"train_cfg\.max_iters='abc': expected a number like the config's current "
                                     r"value 1000, got a str"),
    ({'model.backbone.channels': 16}, r'expected a sequence'),
    ({'model.backbone.deep_stem': 1}, r'expected a bool'),
])
def test_cfg_options_of_the_wrong_type(option, message):
    with pytest.raises(ValueError, match=message):
        load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'), option)
    # Numbers replace numbers, and new keys are accepted.
    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'),
                      {'train_cfg.max_iters': 20, 'optim_wrapper.optimizer.lr': 1, 'new_key': 'x'})
    assert cfg.train_cfg.max_iters == 20


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / 'taken').write_text('keep me')
    with pytest.raises(NotADirectoryError, match=r"output folder .*taken.* is a file"):
        ensure_dir(tmp_path / 'taken')
    with pytest.raises(NotADirectoryError, match=r"is a file"):
        ensure_dir(tmp_path / 'taken' / 'sub')
    assert (tmp_path / 'taken').read_text() == 'keep me'  # nothing already written is lost


@pytest.mark.parametrize('name', ['../x.png', 'a/../../x.png', '/etc/x.png', '', 'a\0b'])
def test_output_names_cannot_escape(tmp_path, name):
    with pytest.raises(ValueError, match='output'):
        output_path(tmp_path, name)


def test_output_names_cannot_escape_through_a_symlink(tmp_path):
    (tmp_path / 'out').mkdir()
    os.symlink(tmp_path, tmp_path / 'out' / 'up')
    with pytest.raises(ValueError, match='outside the output folder'):
        output_path(tmp_path / 'out', 'up/x.png')
    assert output_path(tmp_path / 'out', 'sub/x.png') == tmp_path / 'out' / 'sub' / 'x.png'


def test_checkpoint_of_another_architecture(tmp_path):
    from seg.apis.model_io import build_model
    from seg.engine.checkpoint import load_state_into

    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    ccnet = build_model(cfg)
    cfg.model.decode_head = dict(type='FCNHead', in_channels=128, channels=32, num_classes=9)
    fcn = build_model(cfg)
    with pytest.raises(ValueError, match=r'another architecture.*missing keys .*unexpected keys'):
        load_state_into(fcn, ccnet.state_dict(), 'ccnet.pth', 'the FCN config')


def test_infer_errors(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (tmp_path / 'file').write_text('x')
    from seg.apis.inference import infer_paths

    with pytest.raises(FileNotFoundError, match='no images'):
        infer_paths('unused.pth', str(empty), str(tmp_path / 'o'))
    with pytest.raises(FileNotFoundError, match='neither an image file nor a folder'):
        infer_paths('unused.pth', str(tmp_path / 'missing'), str(tmp_path / 'o'))


def test_tools_report_bad_output_paths(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / 'out').write_text('results of yesterday')
    ckpt = tmp_path / 'c.pth'
    torch.save({'state_dict': {}, 'meta': {}}, ckpt)
    proc = subprocess.run([sys.executable, 'tools/infer.py', '--ckpt', str(ckpt), '--input', str(images),
                           '--output', str(tmp_path / 'out')], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and 'is a file, not a folder' in proc.stderr
    assert (tmp_path / 'out').read_text() == 'results of yesterday'


EVAL_CONFIG = """
_base_ = ['{root}/configs/demo_ccnet.py']
model = dict(num_classes=3, backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8, num_classes=3),
             auxiliary_head=dict(in_channels=16, channels=8, num_classes=3))
val_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False, dataset=dict(
    _delete_=True, type='FolderDataset', data_root='{data}', img_dir='img', ann_dir='ann', classes=('a', 'b', 'c'),
    img_suffix='.png', test_mode=True, on_bad_file='{policy}'))
test_dataloader = val_dataloader
"""


@pytest.mark.parametrize('workers', [0, 2])
def test_evaluation_leaves_an_unreadable_file_out_and_names_it(tmp_path, workers):
    import json

    from seg.apis import evaluate
    from seg.apis.model_io import build_model

    from .conftest import randomize

    root = folder(tmp_path / 'data', n=6)
    (root / 'img' / '2.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')

    def config(policy, batch=1):
        path = tmp_path / f'eval_{policy}_{batch}.py'
        path.write_text(EVAL_CONFIG.format(root=ROOT, data=root, policy=policy, batch=batch))
        return str(path)

    cfg = load_config(config('stop'))
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': randomize(build_model(cfg)).state_dict(), 'meta': {}}, ckpt)
    with pytest.raises(CorruptFileError, match=r'cannot read image file .*2\.png'):
        evaluate(str(ckpt), config=config('stop'), num_workers=workers, precision='fp32')
    skipped = evaluate(str(ckpt), config=config('skip'), num_workers=workers, precision='fp32',
                       out=str(tmp_path / 'skip.json'))
    batched = evaluate(str(ckpt), config=config('skip', batch=2), num_workers=workers, precision='fp32')
    payload = json.loads((tmp_path / 'skip.json').read_text())
    assert [s['path'] for s in payload['skipped_files']] == [str(root / 'img' / '2.png')]
    assert 'cannot read image file' in payload['skipped_files'][0]['error']
    assert len(payload['images']) == len(payload['per_image_counts']) == 5

    os.remove(root / 'img' / '2.png')
    os.remove(root / 'ann' / '2.png')
    never_had = evaluate(str(ckpt), config=config('stop'), num_workers=workers, precision='fp32')
    assert skipped == never_had == batched
    # The neighbour was scored once: substituting it would weigh image 3 twice.
    assert 0 < skipped['mIoU'] < 100


def test_a_training_validation_with_an_unreadable_file_runs(tmp_path):
    """mmengine's ValLoop: an all-unreadable batch predicts nothing, the metric names the file."""
    from seg.evaluation import IoUMetric

    root = folder(tmp_path, n=3)
    (root / 'img' / '1.png').write_bytes(b'')
    ds = dataset(root, test_mode=True, on_bad_file='skip')
    batch = seg_collate([ds[1]])
    assert batch['inputs'] == [] and batch['skipped'][0]['skipped'].endswith('1.png')
    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    from seg.apis.model_io import build_model

    model = build_model(cfg).eval()
    assert model.val_step(batch) == [] and model.test_step(batch) == []
    metric = IoUMetric(num_classes=3)
    metric.process(batch, [])
    good = seg_collate([ds[0]])
    metric.process(good, [dict(s, pred_sem_seg=s['gt_sem_seg']) for s in good['data_samples']])
    result = metric.evaluate(2)
    assert result['aAcc'] == 100.0 and [s['skipped'] for s in metric.last_skipped] == [str(root / 'img' / '1.png')]
