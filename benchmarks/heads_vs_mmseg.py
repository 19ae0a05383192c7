"""The context heads of mmsegmentation next to mmsegmentation 1.2.2 itself, side by side in one run.

    python benchmarks/heads_vs_mmseg.py --mmseg-python /tmp/mmseg-venv/bin/python
        [--heads psp aspp ocr ema gc isa dnl ann apc dm] [--checks eval train memory] [--rounds 1]

R-50-D8 Cityscapes configs, fp32, random weights and input, backbone plus decode head (no auxiliary
head on either side; OCRNet's FCN stage is part of its head on both):

* ``eval`` / ``train``: median seconds per pass at batch 2, 256x512 -- seg's ``tools/benchmark.py
  --precision fp32`` (eval: ``torch.inference_mode``, BatchNorm folded, as ``tools/eval.py``) against
  ``benchmarks/mmseg_peer.py --precision fp32`` (``model.test_step`` / ``model.train_step``). Target:
  seg / mmseg <= 1.0.
* ``memory``: peak tensor memory of one whole-image eval pass at 1024x2048, batch 1, weights included,
  both measured by :func:`seg.analysis.measure.peak_memory`. Target for the attention heads (OCR, EMA,
  GC, ISA, DNL, ANN): seg / mmseg <= 0.5.

Each case runs the two sides back to back in fresh processes (with several rounds the order
alternates and the median is kept). PSANet's mmseg side needs mmcv's compiled PSAMask, which
mmcv-lite lacks: its rows show seg alone. Prints one markdown table.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

from r50_configs import HEAD_CONFIGS as CONFIGS
from r50_configs import PEER_HEAD_CONFIGS as PEER_CONFIGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTENTION_HEADS = ('ocr', 'ema', 'gc', 'isa', 'dnl', 'ann')
NO_PEER = {'psa': "mmcv-lite has no PSAMask"}
TARGET = {'eval': 1.0, 'train': 1.0, 'memory': 0.5}


def seg_config(head: str, tmp: str) -> str:
    """seg's config of ``head`` without the auxiliary head."""
    path = os.path.join(tmp, f'{head}_noaux.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = [{os.path.join(ROOT, 'configs', CONFIGS[head])!r}]\n"
                "model = dict(auxiliary_head=None, loss_weights=dict(out=1.0))\n")
    return path


def command(side: str, head: str, check: str, tmp: str, mmseg_python: str) -> list[str]:
    mode = 'eval' if check == 'memory' else check
    shape, batch = (('1024', '2048'), '1') if check == 'memory' else (('256', '512'), '2')
    passes = ['--repeat', '1', '--iters', '1' if check == 'memory' else '3', '--warmup', '0' if check == 'memory'
              else '1', '--shape', *shape, '--batch-size', batch]
    if side == 'seg':
        return [sys.executable, os.path.join(ROOT, 'tools', 'benchmark.py'), seg_config(head, tmp),
                '--precision', 'fp32', '--mode', mode, *passes]
    depth = ['--depth', '50'] if PEER_CONFIGS[head] != CONFIGS[head] else []  # OCRNet: R-101 published only
    return [mmseg_python, os.path.join(ROOT, 'benchmarks', 'mmseg_peer.py'), PEER_CONFIGS[head],
            '--precision', 'fp32', '--mode', check, '--no-aux', *depth, *passes]


def measure(cmd: list[str], check: str) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if check == 'memory':
        found = re.findall(r'^peak_bytes=(\d+)$', proc.stdout, re.M)
        units = {'KiB': 2**10, 'MiB': 2**20, 'GiB': 2**30}
        found = found or [float(v) * units[u] for v, u in re.findall(r'^peak memory: ([0-9.]+) ([KMG]iB)$', proc.stdout,
                                                                      re.M)]
    else:
        found = re.findall(r'^median_s=([0-9.]+)$', proc.stdout, re.M)
    if proc.returncode or not found:
        raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-1500:]}{proc.stderr[-3000:]}')
    return float(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mmseg-python', required=True, help="the mmseg venv's python")
    parser.add_argument('--heads', nargs='+', choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--checks', nargs='+', choices=['eval', 'train', 'memory'], default=['eval', 'train', 'memory'])
    parser.add_argument('--rounds', type=int, default=1)
    args = parser.parse_args()
    if not os.path.isfile(args.mmseg_python):
        parser.error(f'--mmseg-python {args.mmseg_python!r} does not exist')
    sys.path.insert(0, ROOT)
    from seg.analysis.measure import describe_environment, environment

    print(describe_environment(environment()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for head in args.heads:
            for check in args.checks:
                if check == 'memory' and head not in ATTENTION_HEADS:
                    continue
                values = {'seg': [], 'mmseg': []}
                for r in range(args.rounds):
                    sides = ['seg', 'mmseg'] if r % 2 == 0 else ['mmseg', 'seg']
                    for side in sides:
                        if side == 'mmseg' and head in NO_PEER:
                            continue
                        values[side].append(measure(command(side, head, check, tmp, args.mmseg_python), check))
                seg = statistics.median(values['seg'])
                peer = statistics.median(values['mmseg']) if values['mmseg'] else None
                unit = (lambda v: f'{v / 2**20:.0f} MiB') if check == 'memory' else (lambda v: f'{v:.3f} s')
                if peer is None:
                    ratio = f'mmseg cannot run ({NO_PEER[head]})'
                else:
                    r = seg / peer
                    ratio = f'{r:.2f} {"met" if r <= TARGET[check] else "not met"}'
                rows.append(f'| {head} | {check} | {unit(seg)} | {unit(peer) if peer is not None else "-"} | {ratio} |')
                print(rows[-1], flush=True)
    print(f'\nfp32, R-50-D8, no auxiliary head; eval / train: batch 2, 256x512, median s/pass of 3 after 1 warm-up; '
          f'memory: one whole-image eval pass at 1024x2048, batch 1, peak tensor bytes with the weights; '
          f'{args.rounds} round(s)\n')
    print('| head | check | seg | mmseg 1.2.2 | seg / mmseg (target: time <= 1.0, memory <= 0.5) |')
    print('|---|---|---|---|---|')
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
