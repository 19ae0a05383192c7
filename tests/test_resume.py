"""Interrupted training loses nothing: SIGKILL at two points, resume, bit-identical final weights."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from .conftest import ROOT

pytestmark = pytest.mark.slow

CONFIG = """
_base_ = ['{root}/configs/demo_ccnet.py']
data_root = '{data}'
crop = (32, 64)
train_dataloader = dict(batch_size=2, num_workers={workers}, persistent_workers={persistent},
                        dataset=dict(data_root=data_root, num_images=8, img_size=crop,
                                     pipeline=[dict(type='RandomFlip', prob=0.5)]))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_images=3, img_size=crop, pipeline=[]))
test_dataloader = val_dataloader
model = dict(backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
max_iters = {iters}
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=5)
randomness = dict(seed=3, deterministic=True)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2, max_keep_ckpts=100,
                                     save_best='mIoU', rule='greater'))
"""

ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')


def write_config(tmp_path, iters=20, workers=0):
    path = tmp_path / f'resume_{workers}.py'
    path.write_text(CONFIG.format(root=ROOT, data=tmp_path / 'synthetic', iters=iters, workers=workers,
                                  persistent=workers > 0))
    return str(path)


def train(config, work, *extra):
    proc = subprocess.run([sys.executable, 'tools/train.py', config, '--work-dir', str(work), *extra], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def train_until_killed(config, work, checkpoint, *extra):
    """Start training and SIGKILL it as soon as ``checkpoint`` exists."""
    proc = subprocess.Popen([sys.executable, 'tools/train.py', config, '--work-dir', str(work), *extra],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (work / checkpoint).exists():
        assert proc.poll() is None, f'training ended before {checkpoint}:\n{proc.stderr.read()[-5000:]}'
        assert time.time() < deadline, f'no {checkpoint} after 300 s'
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def weights(path):
    return torch.load(path, map_location='cpu')['state_dict']


def assert_identical(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


@pytest.mark.parametrize('workers', [0, 2])
def test_sigkill_twice_then_resume_is_bit_identical(tmp_path, workers):
    config = write_config(tmp_path, workers=workers)
    train(config, tmp_path / 'straight')
    reference = weights(tmp_path / 'straight' / 'iter_20.pth')

    work = tmp_path / 'killed'
    train_until_killed(config, work, 'iter_6.pth')
    assert not (work / 'iter_20.pth').exists()
    train_until_killed(config, work, 'iter_14.pth', '--resume')
    logs = train(config, work, '--resume')
    assert 'resumed from' in logs
    assert 'Iter(train) [ 1/20]' not in logs
    assert_identical(weights(work / 'iter_20.pth'), reference)


def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = write_config(tmp_path, iters=12)
    train(config, tmp_path / 'straight')
    reference = weights(tmp_path / 'straight' / 'iter_12.pth')

    work = tmp_path / 'broken'
    train_until_killed(config, work, 'iter_8.pth')
    newest = max(work.glob('iter_*.pth'), key=lambda p: int(p.stem.split('_')[1]))
    newest.write_bytes(newest.read_bytes()[:1000])  # a truncated file, as a full disk would leave it
    (work / 'last_checkpoint').write_text(str(newest))
    logs = train(config, work, '--resume')
    assert f'cannot resume from {newest}' in logs
    assert 'trying the checkpoint before it' in logs
    assert_identical(weights(work / 'iter_12.pth'), reference)


def test_save_is_atomic(tmp_path, monkeypatch):
    from seg.engine import checkpoint as ckpt_module

    path = tmp_path / 'iter_2.pth'
    ckpt_module.save_checkpoint_file({'state_dict': {'w': torch.ones(3)}}, path)

    def crash(obj, f):
        f.write(b'partial')
        raise KeyboardInterrupt  # killed in the middle of writing

    monkeypatch.setattr(ckpt_module.torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt_module.save_checkpoint_file({'state_dict': {'w': torch.zeros(3)}}, path)
    assert torch.equal(torch.load(path)['state_dict']['w'], torch.ones(3))  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_2.pth']  # and no temporary file is left


def test_resume_candidates_order(tmp_path):
    from seg.engine.checkpoint import resume_candidates

    for n in (2, 10, 4):
        (tmp_path / f'iter_{n}.pth').write_bytes(b'x')
    (tmp_path / 'best_mIoU_iter_4.pth').write_bytes(b'x')
    assert [os.path.basename(p) for p in resume_candidates(str(tmp_path))] == ['iter_10.pth', 'iter_4.pth',
                                                                               'iter_2.pth']
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert os.path.basename(resume_candidates(str(tmp_path))[0]) == 'iter_4.pth'
    (tmp_path / 'last_checkpoint').write_bytes(b'')  # killed while writing the pointer
    assert os.path.basename(resume_candidates(str(tmp_path))[0]) == 'iter_10.pth'
