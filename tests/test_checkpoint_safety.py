"""Nothing read from a checkpoint is executed: eval, infer, resume and the visualiser on a checkpoint
whose stored config would create a marker file; configs are stored as plain data."""
import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from seg.engine.checkpoint import config_from_checkpoint, load_checkpoint
from seg.engine.config_data import config_from_data, config_to_data, literal_config

from .conftest import ROOT

TINY = """
_base_ = ['{root}/configs/demo_ccnet.py']
data_root = '{data}'
crop = (32, 64)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_images=4, img_size=crop, pipeline=[]))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_images=2, img_size=crop, pipeline=[]))
test_dataloader = val_dataloader
model = dict(backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
max_iters = {iters}
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=100)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2, max_keep_ckpts=10))
"""

ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from seg.apis import train

    tmp = tmp_path_factory.mktemp('safety')
    config = tmp / 'tiny.py'
    config.write_text(TINY.format(root=ROOT, data=tmp / 'synthetic', iters=2))
    train(str(config), work_dir=str(tmp / 'work'))
    return tmp, config


def test_checkpoint_stores_the_config_as_plain_data(trained):
    tmp, config = trained
    ckpt = torch.load(tmp / 'work' / 'iter_2.pth', map_location='cpu', weights_only=True)
    stored = ckpt['meta']['cfg']
    assert isinstance(stored, dict) and stored['model']['type'] == 'EncoderDecoder'

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    assert plain(stored)
    assert plain(ckpt['message_hub'])  # mmengine's HistoryBuffers stored as tagged lists
    rebuilt = config_from_checkpoint(ckpt)
    assert rebuilt.model.decode_head.type == 'CCHead' and rebuilt.train_dataloader.batch_size == 2


EVIL = "_x = __import__('os').system('touch {marker}')\n"


def evil_checkpoint(src, dst, marker):
    """``src`` with its config replaced by Python text that would create ``marker`` (old text format,
    and mmengine's own ``meta.config`` key that its Runner.resume would parse as Python)."""
    ckpt = torch.load(src, map_location='cpu', weights_only=True)
    text = EVIL.format(marker=marker) + Config(ckpt['meta']['cfg']).pretty_text
    ckpt['meta']['cfg'] = text
    ckpt['meta']['config'] = text
    torch.save(ckpt, dst)
    return dst


def test_eval_infer_resume_visualise_never_run_a_stored_config(trained, tmp_path):
    tmp, config = trained
    marker = tmp_path / 'marker'
    ckpt = evil_checkpoint(tmp / 'work' / 'iter_2.pth', tmp_path / 'evil.pth', marker)
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), np.full((32, 64, 3), 100, np.uint8))

    out = run('tools/eval.py', '--ckpt', str(ckpt))
    assert out.returncode != 0 and 'literals only' in out.stderr and 'never executed' in out.stderr
    out = run('tools/infer.py', '--ckpt', str(ckpt), '--input', str(images), '--output', str(tmp_path / 'o'))
    assert out.returncode != 0 and 'literals only' in out.stderr
    out = run('tools/visualize_attention.py', '--ckpt', str(ckpt), '--image', str(images / 'a.png'),
              '--out', str(tmp_path / 'v'), '--no-grad-cam')
    assert out.returncode != 0 and 'literals only' in out.stderr
    # Resume reads weights and states only: the run's own config is the one the user passed.
    work = tmp_path / 'work'
    work.mkdir()
    os.replace(ckpt, work / 'iter_2.pth')
    cfg4 = tmp_path / 'tiny4.py'
    cfg4.write_text(TINY.format(root=ROOT, data=tmp / 'synthetic', iters=4))
    out = run('tools/train.py', str(cfg4), '--work-dir', str(work), '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'resumed from' in out.stdout + out.stderr and (work / 'iter_4.pth').exists()
    assert not marker.exists()


def test_old_text_configs_are_read_as_literals(trained):
    tmp, _ = trained
    ckpt = load_checkpoint(tmp / 'work' / 'iter_2.pth')
    data = ckpt['meta']['cfg']
    ckpt['meta']['cfg'] = Config(data).pretty_text  # what checkpoints of earlier versions stored
    assert config_from_checkpoint(ckpt).to_dict() == config_from_data(data).to_dict()


@pytest.mark.parametrize('text, found', [
    ("import os\n", 'Import'),
    ("x = os.getcwd()\n", 'Call'),
    ("x = dict(a=open('f'))\n", 'Call'),
    ("x = [i for i in range(3)]\n", 'ListComp'),
    ("x = 1 + 2\n", 'BinOp'),
    ("x = {**y}\n", 'unpacking'),
    ("x: int = 3\n", 'AnnAssign'),
    ("x = lambda: 0\n", 'Lambda'),
    ("x = (\n", 'not valid Python'),
])
def test_literal_parser_refuses_code(text, found):
    with pytest.raises(ValueError, match=found):
        literal_config(text)


def test_literal_parser_reads_pretty_text():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'danet', 'danet_r101-d8_4xb2-80k_cityscapes-769x769.py'))
    assert literal_config(cfg.pretty_text) == config_to_data(cfg)


def test_config_with_objects_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match=r'optimizer\.type is a type .* plain data'):
        config_to_data(Config(dict(optimizer=dict(type=torch.optim.SGD))))


class _Payload:
    def __reduce__(self):
        return (os.system, ('true',))


def test_pickled_objects_are_refused_with_a_clear_error(tmp_path):
    path = tmp_path / 'pickled.pth'
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': {}, 'meta': _Payload()}, f)
    with pytest.raises(ValueError, match='weights_only=True.* refuses'):
        load_checkpoint(path)
    (tmp_path / 'cut.pth').write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(ValueError, match='truncated or not a file written by torch.save'):
        load_checkpoint(tmp_path / 'cut.pth')
    torch.save({'weights': torch.ones(1)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='expected a dict with a "state_dict" key'):
        load_checkpoint(tmp_path / 'other.pth')
