"""DDP on CPU (gloo): the evaluation of 2 processes equals that of 1; a rank that raises ends the run."""
import glob
import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow

CONFIG = """
_base_ = ['{root}/configs/demo_ccnet.py']
data_root = '{data}'
crop = (32, 64)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_images=8, img_size=crop,
                                     pipeline=[dict(type='RandomFlip', prob=0.5)]))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_images=5, img_size=crop, pipeline=[]))
test_dataloader = val_dataloader
model = dict(backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
max_iters = 4
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=4)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4, max_keep_ckpts=1))
{extra}
"""

FAILING_HOOK = '''
import torch.distributed as dist
from mmengine.hooks import Hook
from seg.registry import HOOKS


@HOOKS.register_module()
class RaiseOnRankOne(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if dist.get_rank() == 1 and runner.iter == 2:
            raise RuntimeError('rank 1 failed on purpose at iteration 3')
'''

ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')


def torchrun(config, work, port, timeout=600, env=ENV):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                           f'--master_port={port}', 'tools/train.py', config, '--work-dir', str(work),
                           '--launcher', 'pytorch'], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_two_processes_evaluate_like_one(tmp_path):
    config = tmp_path / 'ddp.py'
    config.write_text(CONFIG.format(root=ROOT, data=tmp_path / 'synthetic', extra=''))
    work = tmp_path / 'work'
    out = torchrun(str(config), work, 29541)
    assert out.returncode == 0, out.stderr[-4000:]
    scalars = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    entries = [json.loads(line) for line in open(scalars[0]) if 'mIoU' in line]
    ddp = entries[-1]
    # The same computation as the validation of training: fp32, BatchNorms as they are.
    single = subprocess.run([sys.executable, 'tools/eval.py', '--ckpt', str(work / 'iter_4.pth'), '--out',
                             str(tmp_path / 'm.json'), '--precision', 'fp32', '--no-fold-bn'], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    metrics = json.loads((tmp_path / 'm.json').read_text())['metrics']
    keys = [k for k in metrics if k in ddp]
    assert len(keys) == 3 + 2 * 9  # aAcc, mIoU, mAcc and IoU / Acc of the 9 classes
    assert {k: ddp[k] for k in keys} == {k: metrics[k] for k in keys}


def test_one_rank_raising_ends_every_rank(tmp_path):
    (tmp_path / 'failing_hook.py').write_text(FAILING_HOOK)
    config = tmp_path / 'fail.py'
    extra = ("custom_imports = dict(imports=['failing_hook'], allow_failed_imports=False)\n"
             "custom_hooks = [dict(type='RaiseOnRankOne')]\nmax_iters = 50\n"
             "train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=100)\n")
    config.write_text(CONFIG.format(root=ROOT, data=tmp_path / 'synthetic', extra=extra))
    env = dict(ENV, PYTHONPATH=f'{ROOT}{os.pathsep}{tmp_path}')
    start = time.time()
    out = torchrun(str(config), tmp_path / 'work', 29543, timeout=300, env=env)
    assert out.returncode != 0
    assert 'rank 1 failed on purpose at iteration 3' in out.stderr
    assert time.time() - start < 240, 'the other rank hung instead of exiting'
