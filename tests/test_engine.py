"""End to end: train -> kill -> --resume -> eval from the checkpoint alone; infer; DDP on gloo."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from seg.engine.checkpoint import load_checkpoint

from .conftest import ROOT

pytestmark = pytest.mark.slow

TINY = """
_base_ = ['{root}/configs/demo_ccnet.py']
data_root = '{data}'
crop = (32, 64)
pipeline = [dict(type='RandomFlip', prob=0.5)]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_images=8, img_size=crop, pipeline=pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_images=4, img_size=crop, pipeline=[]))
test_dataloader = val_dataloader
model = dict(backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
max_iters = {iters}
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval={val})
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2, max_keep_ckpts=100,
                                     save_best='mIoU', rule='greater'))
"""


def write_tiny(tmp_path, iters=6, val=3):
    path = tmp_path / f'tiny_{iters}.py'
    path.write_text(TINY.format(root=ROOT, data=tmp_path / 'synthetic', iters=iters, val=val))
    return str(path)


def run_tool(*args, check=True, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc


def test_train_kill_resume_then_eval_from_checkpoint(tmp_path):
    config = write_tiny(tmp_path, iters=60, val=30)
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/train.py', config, '--work-dir', str(work)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (work / 'iter_4.pth').exists():
        assert proc.poll() is None, f'training ended early:\n{proc.stderr.read()[-5000:]}'
        assert time.time() < deadline, 'no checkpoint after 300 s'
        time.sleep(0.05)
    # Killed the moment iter_4.pth appears: checkpoints are written to a temporary name and renamed
    # (seg.engine.checkpoint.save_checkpoint_file), so a file under a checkpoint's name is complete.
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (work / 'iter_60.pth').exists(), 'the run finished before it was killed'
    done = sorted(int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth'))
    for path in work.glob('*.pth'):  # every one loads, whatever save the kill interrupted
        assert 'state_dict' in load_checkpoint(path), path

    out = run_tool('tools/train.py', config, '--work-dir', str(work), '--resume')
    assert (work / 'iter_60.pth').exists()
    assert 'resumed' in (out.stdout + out.stderr).lower()
    # The resumed run started at the last checkpoint, not at 0: the iterations before it were not re-run.
    logs = out.stdout + out.stderr
    assert f'Iter(train) [{done[-1] + 1:>2}/60]' in logs or f'Iter(train) [{done[-1] + 1}/60]' in logs
    assert 'Iter(train) [ 1/60]' not in logs

    metrics_path = tmp_path / 'metrics.json'
    out = run_tool('tools/eval.py', '--ckpt', str(work / 'iter_60.pth'), '--out', str(metrics_path))
    assert 'mIoU' in out.stdout
    metrics = json.loads(metrics_path.read_text())
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(metrics['metrics'])
    assert len(metrics['confusion_matrix']) == 9


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('tiny')
    config = write_tiny(tmp_path, iters=4, val=4)
    from seg.apis import train

    runner = train(config, work_dir=str(tmp_path / 'work'))
    return str(tmp_path / 'work' / f'iter_{runner.iter}.pth'), tmp_path


def test_checkpoint_loads_with_default_weights_only(tiny_checkpoint):
    ckpt, _ = tiny_checkpoint
    state = torch.load(ckpt, map_location='cpu')  # PyTorch's default: weights_only=True, nothing allow-listed
    assert 'state_dict' in state and 'cfg' in state['meta']
    assert state['message_hub']['log_scalars']  # the history is kept, as plain data


def test_eval_rejects_checkpoint_with_other_class_count(tiny_checkpoint, tmp_path):
    ckpt, base = tiny_checkpoint
    other = tmp_path / 'other.py'
    other.write_text(f"_base_ = ['{base / 'tiny_4.py'}']\nnum_classes = 5\n"
                     "model = dict(num_classes=5, decode_head=dict(num_classes=5), "
                     "auxiliary_head=dict(num_classes=5))\n")
    from seg.apis import evaluate

    with pytest.raises(ValueError, match=r'predicts 9 classes .* builds 5'):
        evaluate(ckpt, config=str(other))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        evaluate(str(tmp_path / 'nope.pth'))


def test_infer_folder_with_corrupt_and_grayscale_images(tiny_checkpoint, tmp_path):
    ckpt, _ = tiny_checkpoint
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / 'color.png'), rng.integers(0, 255, (40, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(images / 'gray.jpg'), rng.integers(0, 255, (33, 50), dtype=np.uint8))
    (images / 'corrupt.png').write_bytes(b'not a png at all')
    out = run_tool('tools/infer.py', '--ckpt', ckpt, '--input', str(images), '--output', str(tmp_path / 'out'))
    assert 'processed 2 image(s), skipped 1' in out.stdout
    for stem, size in (('color', (40, 70)), ('gray', (33, 50))):
        for kind in ('label', 'color', 'overlay'):
            img = cv2.imread(str(tmp_path / 'out' / f'{stem}_{kind}.png'), cv2.IMREAD_UNCHANGED)
            assert img is not None and img.shape[:2] == size, (stem, kind)
        assert cv2.imread(str(tmp_path / 'out' / f'{stem}_label.png'), cv2.IMREAD_UNCHANGED).max() < 9
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'x.jpg').write_bytes(b'\x00\x01')
    out = run_tool('tools/infer.py', '--ckpt', ckpt, '--input', str(bad), '--output', str(tmp_path / 'o2'),
                   check=False)
    assert out.returncode == 1 and 'processed 0 image(s), skipped 1' in out.stdout


def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    config = write_tiny(tmp_path, iters=4, val=4)
    work = tmp_path / 'ddp'
    out = run_tool('-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29531',
                   'tools/train.py', config, '--work-dir', str(work), '--launcher', 'pytorch')
    assert (work / 'iter_4.pth').exists(), out.stderr[-3000:]
    assert 'world_size: 2' in (out.stdout + out.stderr) or 'Distributed launcher: pytorch' in (out.stdout + out.stderr)


def test_unknown_type_in_config_lists_valid_names(tmp_path):
    config = tmp_path / 'bad.py'
    config.write_text(f"_base_ = ['{write_tiny(tmp_path)}']\nmodel = dict(decode_head=dict(type='CCHeed'))\n")
    out = run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'), check=False)
    assert out.returncode != 0
    assert "unknown model type 'CCHeed'" in out.stderr and 'CCHead' in out.stderr
