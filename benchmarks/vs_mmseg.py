"""seg next to mmsegmentation 1.2.2, side by side in one run, on the same machine.

    python benchmarks/vs_mmseg.py --mmseg-python /tmp/mmseg-venv/bin/python [--models fcn ccnet danet nonlocal]
        [--modes eval train] [--shape 256 512] [--batch-size 2] [--iters 3] [--warmup 1] [--rounds 1]

Each case runs four processes -- seg's ``tools/benchmark.py`` with ``--precision fp32`` and with
``--precision auto`` (the default fast settings), and ``benchmarks/mmseg_peer.py`` (in the mmseg venv,
see its docstring) in fp32 and under bf16 autocast -- on the same R-50-D8 Cityscapes config,
random weights and random input. Every process prints ``median_s``; with several rounds the order
of the four rotates and the median over rounds is kept, so load on the machine hits all alike.
Prints a markdown table with the ratios the speed targets are stated in: seg auto / mmseg fp32
(target <= 0.5) and seg auto / mmseg bf16 (target <= 0.9 since issue 22: 0.7 was set on an AMX Xeon).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

from r50_configs import CONFIGS, PEER_CONFIGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('seg fp32', 'seg auto', 'mmseg fp32', 'mmseg bf16')
TARGETS = {'mmseg fp32': 0.5, 'mmseg bf16': 0.9}


def command(variant: str, model: str, mode: str, args) -> list[str]:
    common = ['--mode', mode, '--shape', *map(str, args.shape), '--batch-size', str(args.batch_size),
              '--repeat', '1', '--iters', str(args.iters), '--warmup', str(args.warmup)]
    who, precision = variant.split()
    if who == 'seg':
        return [sys.executable, os.path.join(ROOT, 'tools', 'benchmark.py'),
                os.path.join(ROOT, 'configs', CONFIGS[model]), '--precision', precision, *common]
    return [args.mmseg_python, os.path.join(ROOT, 'benchmarks', 'mmseg_peer.py'), PEER_CONFIGS[model],
            '--precision', precision, *common]


def median_s(cmd: list[str]) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    found = re.findall(r'^median_s=([0-9.]+)$', proc.stdout, re.M)
    if proc.returncode or not found:
        raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
    return float(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mmseg-python', required=True, help="the mmseg venv's python")
    parser.add_argument('--models', nargs='+', choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--modes', nargs='+', choices=['eval', 'train'], default=['eval', 'train'])
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 512))
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=1)
    args = parser.parse_args()
    if not os.path.isfile(args.mmseg_python):
        parser.error(f'--mmseg-python {args.mmseg_python!r} does not exist')
    sys.path.insert(0, ROOT)
    from seg.analysis.measure import environment

    env = environment('cpu')
    print(f"torch {env['torch']}, {env['cpu']}, {env['cpu_count']} CPUs; R-50-D8, batch {args.batch_size}, "
          f"{args.shape[0]}x{args.shape[1]}, median s/pass of {args.iters} timed passes after {args.warmup} "
          f"warm-up, {args.rounds} round(s)\n", flush=True)
    print('| model | mode | ' + ' | '.join(VARIANTS) + ' | auto / mmseg fp32 (<= 0.5) | auto / mmseg bf16 (<= 0.9) |')
    print('|---|---|' + '---|' * (len(VARIANTS) + 2), flush=True)
    for model in args.models:
        for mode in args.modes:
            times = {v: [] for v in VARIANTS}
            for r in range(args.rounds):
                for v in VARIANTS[r % 4:] + VARIANTS[:r % 4]:
                    times[v].append(median_s(command(v, model, mode, args)))
                    print(f'  {model} {mode} {v}: {times[v][-1]:.3f} s', file=sys.stderr, flush=True)
            t = {v: statistics.median(x) for v, x in times.items()}
            ratios = []
            for peer, target in TARGETS.items():
                ratio = t['seg auto'] / t[peer]
                ratios.append(f'{ratio:.2f} {"met" if ratio <= target else "not met"}')
            print(f'| {model} | {mode} | ' + ' | '.join(f'{t[v]:.3f} s' for v in VARIANTS) + ' | '
                  + ' | '.join(ratios) + ' |', flush=True)

if __name__ == '__main__':
    main()
