"""A comparison's training runs as jobs: planned as files, executed by any launcher, collected.

``plan`` writes, for every (model, seed), ``OUT/runs/<model>/seed<k>/config.json`` (the run's resolved
training config, as data) and ``run.json`` (its record), and ``OUT/plan.sh``: one ``tools/train.py``
command per run (``--resume``, so the same line starts, requeues and resumes it), with its torchrun form.
``bash OUT/plan.sh`` runs them one after another; ``bash OUT/plan.sh K`` runs the K-th only, for GNU
parallel (``seq 0 N-1 | parallel -j 4 bash OUT/plan.sh {}``) or a SLURM job array
(``sbatch --array=0-N-1 ... bash OUT/plan.sh $SLURM_ARRAY_TASK_ID``).

:func:`execute_plan` runs them here, K at a time, each in its own process (its own share of the CPU
threads, or its own ``CUDA_VISIBLE_DEVICES`` slice under torchrun); a run that fails does not stop the
others. :func:`run_status` says of a run whether it is done, failed or unfinished, with its last log
line; a finished run is evaluated once by the collect step (:mod:`seg.apis.compare`).
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from seg.fileio import ensure_dir

__all__ = ['LaunchSettings', 'PlannedRun', 'execute_plan', 'plan_commands', 'run_status', 'write_plan']

TRAIN_TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'train.py'
PLAN_FILE = 'plan.json'


@dataclass
class PlannedRun:
    """One training run of a comparison: ``dir`` holds ``config.json`` and, once trained, its checkpoints."""

    label: str
    seed: int
    dir: Path
    iters: int


@dataclass
class LaunchSettings:
    """How the runs are executed.

    Attributes:
        parallel: runs at once.
        launcher: ``'none'`` (one process per run) or ``'pytorch'`` (torchrun DDP per run).
        nproc_per_node: processes per run under torchrun (GPUs per run on CUDA).
        threads: CPU threads per run (default: the cores divided among the parallel runs).
    """

    parallel: int = 1
    launcher: str = 'none'
    nproc_per_node: int = 1
    threads: int | None = None

    def check(self) -> None:
        if self.parallel < 1 or self.nproc_per_node < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError(f'--parallel, --nproc-per-node and --threads-per-job must be >= 1, got '
                             f'{self.parallel}, {self.nproc_per_node}, {self.threads}')
        if self.launcher not in ('none', 'pytorch'):
            raise ValueError(f"--launcher must be 'none' or 'pytorch', got {self.launcher!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def plan_commands(run: PlannedRun, launch: LaunchSettings, python: str = 'python', port: int | None = None,
                  tool: str | os.PathLike = 'tools/train.py') -> list[str]:
    """The command that trains ``run`` (resuming it when it has a checkpoint)."""
    config, work = str(run.dir / 'config.json'), str(run.dir)
    if launch.launcher == 'pytorch':
        return [python, '-m', 'torch.distributed.run', f'--nproc_per_node={launch.nproc_per_node}',
                f'--master_port={port or 29500}', str(tool), config, '--work-dir', work, '--launcher', 'pytorch',
                '--resume']
    return [python, str(tool), config, '--work-dir', work, '--resume']


def write_plan(out: Path, runs: list[PlannedRun], meta: dict) -> Path:
    """``OUT/plan.json`` (the comparison's models and settings, and its runs) and ``OUT/plan.sh``."""
    out = ensure_dir(out)
    entries = [dict(label=r.label, seed=r.seed, dir=os.path.relpath(r.dir, out), iters=r.iters) for r in runs]
    (out / PLAN_FILE).write_text(json.dumps(dict(meta, runs=entries), indent=1))
    single = LaunchSettings()
    ddp = LaunchSettings(launcher='pytorch', nproc_per_node=4)
    lines = ['#!/usr/bin/env bash',
             f'# {len(runs)} training runs of a comparison, written by tools/compare.py --plan. From the repository root:',
             '#   bash plan.sh            all, one after another',
             '#   bash plan.sh K          run K only (0-based): GNU parallel, a SLURM job array',
             '# Each line resumes its run from its latest checkpoint (or starts it); the torchrun form of each',
             f'# is in the comment below it. Collect with: python tools/compare.py --collect {shlex.quote(str(out))}',
             'set -uo pipefail', 'i=0', 'status=0']
    for r in runs:
        cmd = ' '.join(shlex.quote(c) for c in plan_commands(r, single))
        log = shlex.quote(str(r.dir / 'train.log'))
        lines.append(f'if [ -z "${{1:-}}" ] || [ "$1" = "$i" ]; then {cmd} >> {log} 2>&1 || status=$?; fi; i=$((i+1))')
        lines.append('#   ' + ' '.join(shlex.quote(c) for c in plan_commands(r, ddp)))
    lines.append('exit $status')
    path = out / 'plan.sh'
    path.write_text('\n'.join(lines) + '\n')
    path.chmod(0o755)
    return path


def read_plan(out: Path) -> dict:
    """``OUT/plan.json``.

    Raises:
        FileNotFoundError: there is none (the folder is not a planned comparison).
    """
    path = Path(out) / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist: plan a comparison first (tools/compare.py ... --plan '
                                f'{out}) or give the folder of one')
    return json.loads(path.read_text())


def planned_runs(out: Path, plan: dict) -> list[PlannedRun]:
    return [PlannedRun(e['label'], int(e['seed']), Path(out) / e['dir'], int(e['iters'])) for e in plan['runs']]


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors='replace').splitlines() if line.strip()]
    except OSError:
        return ''
    return lines[-1][:300] if lines else ''


def run_status(run: PlannedRun) -> tuple[str, str]:
    """(``'done'`` | ``'failed'`` | ``'unfinished'``, the last line of its log)."""
    if (run.dir / f'iter_{run.iters}.pth').is_file():
        return 'done', ''
    status = {}
    try:
        status = json.loads((run.dir / 'status.json').read_text())
    except (OSError, ValueError):
        pass
    last = _last_line(run.dir / 'train.log')
    if status.get('exit_code') not in (None, 0):
        return 'failed', last
    return 'unfinished', last


def execute_plan(out: Path, launch: LaunchSettings, log: Callable[[str], None] = print,
                 python: str = sys.executable) -> dict[str, str]:
    """Train every planned run that is not done, ``launch.parallel`` at a time.

    Each run's output goes to ``<run>/train.log``; its exit code, wall time and peak resident memory
    (of its main process, from ``wait4``) to ``<run>/status.json``.

    Returns:
        ``{run dir: 'done' | 'failed' | 'unfinished'}``.
    """
    import torch

    launch.check()
    if not TRAIN_TOOL.is_file():
        raise FileNotFoundError(f'{TRAIN_TOOL} not found: running a plan needs the repository checkout '
                                '(pip install -e .)')
    runs = planned_runs(out, read_plan(out))
    todo = [r for r in runs if run_status(r)[0] != 'done']
    for run in runs:
        if run not in todo:
            log(f'   {run.label} seed {run.seed}: finished earlier, kept ({run.dir})')
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    per_run_gpus = launch.nproc_per_node if launch.launcher == 'pytorch' else 1
    slots = min(launch.parallel, max(1, gpus // per_run_gpus)) if gpus else launch.parallel
    threads = launch.threads or max(1, (os.cpu_count() or 1) // (slots * (launch.nproc_per_node
                                                                          if launch.launcher == 'pytorch' else 1)))
    free = list(range(slots))
    running: dict[int, tuple[subprocess.Popen, PlannedRun, int, float, object]] = {}
    log(f'{len(todo)} of {len(runs)} runs to train, {slots} at a time, {threads} CPU thread(s) each'
        + (f', {per_run_gpus} GPU(s) each' if gpus else ''))

    def start(run: PlannedRun, slot: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if gpus:
            env['CUDA_VISIBLE_DEVICES'] = ','.join(str(slot * per_run_gpus + i) for i in range(per_run_gpus))
        cmd = plan_commands(run, launch, python, _free_port(), TRAIN_TOOL)
        handle = open(run.dir / 'train.log', 'a')
        proc = subprocess.Popen(cmd, cwd=str(TRAIN_TOOL.parents[1]), env=env, stdout=handle,
                                stderr=subprocess.STDOUT)
        running[proc.pid] = (proc, run, slot, time.perf_counter(), handle)
        log(f'   started {run.label} seed {run.seed} (pid {proc.pid})')

    queue = list(todo)
    while queue or running:
        while queue and free:
            start(queue.pop(0), free.pop(0))
        pid, wait_status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        proc, run, slot, began, handle = running.pop(pid)
        handle.close()
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        record = dict(exit_code=proc.returncode, seconds=round(time.perf_counter() - began, 1),
                      peak_rss_mib=round(usage.ru_maxrss / 1024, 1))
        (run.dir / 'status.json').write_text(json.dumps(record))
        state, last = run_status(run)
        log(f'   {run.label} seed {run.seed}: {state} (exit {proc.returncode}, {record["seconds"]} s)'
            + (f': {last}' if state != 'done' and last else ''))
        free.append(slot)
    return {str(r.dir): run_status(r)[0] for r in runs}
