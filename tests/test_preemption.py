"""Preemption loses nothing: SIGTERM / SIGUSR1 finish the iteration, save it and exit 75; ``--resume``
continues bit-identically; a torchrun group whose worker dies restarts from the latest checkpoint."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from seg.engine.preemption import PREEMPTED_EXIT_CODE, StopSignals

from .conftest import ROOT, tiny_demo_config
from .test_resume import ENV, assert_identical, train, weights, write_config

pytestmark = pytest.mark.slow


def train_until_signalled(config, work, at_iter, signals, *extra):
    """Start training in its own process group; when the log shows iteration ``at_iter``, send each of
    ``signals`` to the whole group (as SLURM does), 50 ms apart. Returns (exit code, output)."""
    proc = subprocess.Popen([sys.executable, 'tools/train.py', config, '--work-dir', str(work), *extra], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.time() + 300
    for line in proc.stdout:
        lines.append(line)
        if f'Iter(train) [{at_iter:>2}/' in line:
            for sig in signals:
                os.killpg(proc.pid, sig)
                time.sleep(0.05)
            break
        assert time.time() < deadline
    lines.extend(proc.stdout)
    proc.wait(timeout=120)
    return proc.returncode, ''.join(lines)


def test_signals_save_the_iteration_and_resume_is_bit_identical(tmp_path):
    config = write_config(tmp_path, iters=20, workers=2)  # checkpoints every 2 iterations
    train(config, tmp_path / 'straight')
    reference = weights(tmp_path / 'straight' / 'iter_20.pth')

    work = tmp_path / 'preempted'
    # A first start with --resume (auto) starts from scratch; two SIGTERMs to the group (workers too).
    code, out = train_until_signalled(config, work, 5, [signal.SIGTERM, signal.SIGTERM], '--resume')
    assert code == PREEMPTED_EXIT_CODE, out[-3000:]
    assert 'no checkpoint' in out and 'starting from scratch' in out
    saved = [p for p in work.glob('iter_*.pth')]
    stopped = max(int(p.stem.split('_')[1]) for p in saved)
    assert stopped in (5, 6, 7), out[-3000:]
    assert f'SIGTERM received: stopped after iteration {stopped} and saved {work / f"iter_{stopped}.pth"}' in out
    assert f'--work-dir {work} --resume' in out  # what to run next
    assert (work / 'last_checkpoint').read_text() == str(work / f'iter_{stopped}.pth')
    if stopped % 2:
        assert 'more stop signal(s) arrived while saving; ignored' in out or stopped == 5

    # SIGUSR1 (sbatch --signal=USR1@T) on the resumed run, at an iteration with no regular checkpoint.
    code, out = train_until_signalled(config, work, 11, [signal.SIGUSR1], '--resume')
    assert code == PREEMPTED_EXIT_CODE, out[-3000:]
    assert f'resumed from {work / f"iter_{stopped}.pth"}' in out
    assert 'SIGUSR1 received' in out

    logs = train(config, work, '--resume')
    assert 'resumed from' in logs and 'Iter(train) [ 1/20]' not in logs
    # the persistent DataLoader workers end quietly with the process (no crash report at exit)
    assert 'Exception ignored' not in logs and 'exited unexpectedly' not in logs and 'killed by signal' not in logs
    assert_identical(weights(work / 'iter_20.pth'), reference)


def test_resume_from_a_named_checkpoint(tmp_path):
    config = write_config(tmp_path, iters=6)
    train(config, tmp_path / 'a')
    logs = train(config, tmp_path / 'b', '--resume', str(tmp_path / 'a' / 'iter_4.pth'))
    assert f'resumed from {tmp_path / "a" / "iter_4.pth"}' in logs
    assert_identical(weights(tmp_path / 'b' / 'iter_6.pth'), weights(tmp_path / 'a' / 'iter_6.pth'))
    out = subprocess.run([sys.executable, 'tools/train.py', config, '--resume', str(tmp_path / 'nope.pth')],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and 'nope.pth' in out.stderr and 'no such checkpoint' in out.stderr


def test_stop_signals_record_the_first_and_count_the_rest():
    with StopSignals() as stop:
        assert not stop.agreed()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.agreed() and stop.name == 'SIGUSR1' and stop.ignored == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


KILL_HOOK = '''
import os
import signal

import torch.distributed as dist
from mmengine.hooks import Hook
from seg.registry import HOOKS


@HOOKS.register_module()
class KillRankOneOnce(Hook):
    """SIGKILL rank 1 in the middle of iteration 7 of the first attempt (as the OOM killer would)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 6 and dist.get_rank() == 1 and os.environ.get('TORCHELASTIC_RESTART_COUNT') == '0':
            os.kill(os.getpid(), signal.SIGKILL)
'''

DDP_EXTRA = """max_iters = 12
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=100)
randomness = dict(seed=5, deterministic=True)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4, max_keep_ckpts=10))
"""


def torchrun(config, work, port, env, *extra):
    # The restarted group meets in the store of the first attempt: seg.engine.distributed keeps the keys
    # of each attempt apart (without it, rank 0 connects to the dead worker's address).
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--max-restarts=1',
                           f'--master_port={port}', 'tools/train.py', str(config), '--work-dir', str(work),
                           '--launcher', 'pytorch', '--resume', *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_torchrun_restarts_a_killed_group_from_the_latest_checkpoint(tmp_path):
    (tmp_path / 'kill_hook.py').write_text(KILL_HOOK)
    plain = tmp_path / 'plain.py'
    plain.write_text(tiny_demo_config(tmp_path / 'synthetic', extra=DDP_EXTRA))
    killing = tmp_path / 'killing.py'
    killing.write_text(tiny_demo_config(tmp_path / 'synthetic', extra=DDP_EXTRA + (
        "custom_imports = dict(imports=['kill_hook'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='KillRankOneOnce')]\n")))
    env = dict(ENV, PYTHONPATH=f'{ROOT}{os.pathsep}{tmp_path}')

    out = torchrun(plain, tmp_path / 'straight', 29551, env)
    assert out.returncode == 0, out.stderr[-4000:]
    out = torchrun(killing, tmp_path / 'killed', 29553, env)
    assert out.returncode == 0, out.stderr[-4000:]
    log = out.stdout + out.stderr
    assert 'exitcode: -9' in log  # torchrun saw the worker die of SIGKILL, and restarted the group
    assert f'resumed from {tmp_path / "killed" / "iter_4.pth"}' in log
    assert_identical(torch.load(tmp_path / 'killed' / 'iter_12.pth', map_location='cpu')['state_dict'],
                     torch.load(tmp_path / 'straight' / 'iter_12.pth', map_location='cpu')['state_dict'])


SRUN = '#!/bin/sh\n[ "$1" = --kill-on-bad-exit=1 ] && shift\nexec "$@"\n'
SCONTROL = ('#!/bin/sh\nif [ "$1" = show ]; then echo 127.0.0.1; '
            'elif [ "$1" = requeue ]; then echo "$2" >> "$REQUEUED"; fi\n')


def slurm_stand_ins(folder):
    """``folder/bin`` with the ``srun`` and ``scontrol`` stand-ins; returns its path."""
    bin_dir = folder / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', SRUN), ('scontrol', SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_the_slurm_script_requeues_at_the_time_limit_and_the_requeued_job_finishes(tmp_path):
    """tools/slurm_train.sh under stand-ins for srun and scontrol (srun runs its command, scontrol records
    the requeue): SIGUSR1 to the batch script, as ``--signal=B:USR1@180`` sends it, stops the two workers
    after their iteration with a checkpoint; the requeued job resumes from it and finishes."""
    bin_dir = slurm_stand_ins(tmp_path)
    config = tmp_path / 'job.py'
    config.write_text(tiny_demo_config(tmp_path / 'synthetic', extra=DDP_EXTRA.replace('max_iters = 12', 'max_iters = 40')))
    work = tmp_path / 'work'
    env = dict(ENV, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', SLURM_JOB_ID='77', SLURM_JOB_NODELIST='n1',
               SLURM_NNODES='1', GPUS_PER_NODE='2', PORT='29557', PYTHON=sys.executable,
               REQUEUED=str(tmp_path / 'requeued'))
    job = [os.path.join(ROOT, 'tools', 'slurm_train.sh'), str(config), str(work)]
    proc = subprocess.Popen(['bash', *job], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if 'Iter(train) [ 5/40]' in line:
            proc.send_signal(signal.SIGUSR1)  # to the batch script only
            break
    lines.extend(proc.stdout)
    assert proc.wait(timeout=180) == 0, ''.join(lines)[-4000:]
    out = ''.join(lines)
    assert (tmp_path / 'requeued').read_text().split() == ['77']
    assert 'SIGTERM received: saving the checkpoint of iteration' in out
    stopped = max(int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth'))
    assert 5 <= stopped < 40

    again = subprocess.run(['bash', *job], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:]
    assert f'resumed from {work / f"iter_{stopped}.pth"}' in again.stdout + again.stderr
    assert (work / 'iter_40.pth').exists()
