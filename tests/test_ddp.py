"""DDP on CPU (gloo): the evaluation of 2 processes equals that of 1; a rank that raises ends the run."""
import glob
import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, tiny_demo_config

pytestmark = pytest.mark.slow


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
    config.write_text(tiny_demo_config(tmp_path / 'synthetic', val_images=5))
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
    config.write_text(tiny_demo_config(tmp_path / 'synthetic', val_images=5, extra=extra))
    env = dict(ENV, PYTHONPATH=f'{ROOT}{os.pathsep}{tmp_path}')
    start = time.time()
    out = torchrun(str(config), tmp_path / 'work', 29543, timeout=300, env=env)
    assert out.returncode != 0
    assert 'rank 1 failed on purpose at iteration 3' in out.stderr
    assert time.time() - start < 240, 'the other rank hung instead of exiting'
