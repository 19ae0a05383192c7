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

On a CPU without native bf16 (or with oneDNN capped below it, as ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` emulates an AVX2 CPU) mmseg's bf16 autocast is emulated and slower than fp32 by
hours, so that column is dropped; in eval a fifth process, ``seg int8`` (``tools/benchmark.py --precision
int8``), times the int8 path that ``auto`` takes there on trained weights: random weights fail its accuracy
guard (their logits nearly tie), so ``seg auto`` times fp32 on them, and ``seg int8`` is timed unguarded.
Its ratio to mmseg fp32 is the target's (<= 0.5); the guard is measured on trained models with
``tools/benchmark.py --ckpt ... --check-accuracy``.
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
NO_BF16_VARIANTS = ('seg fp32', 'seg auto', 'seg int8', 'mmseg fp32')
TARGETS = {'mmseg fp32': 0.5, 'mmseg bf16': 0.9}


def variants(mode: str) -> tuple[str, ...]:
    """The processes of one case: with native bf16 the four of the table; without, no mmseg bf16 (emulated)
    and, in eval, seg int8."""
    from seg.engine.precision import cpu_bf16_flags, onednn_isa_cap

    if cpu_bf16_flags() and onednn_isa_cap() is None:
        return VARIANTS
    return tuple(v for v in NO_BF16_VARIANTS if mode == 'eval' or v != 'seg int8')


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
    native = variants('eval') == VARIANTS
    columns = list(VARIANTS if native else NO_BF16_VARIANTS)
    pairs = [('seg auto', 'mmseg fp32'), ('seg auto', 'mmseg bf16') if native else ('seg int8', 'mmseg fp32')]
    ratio_columns = [f'{ours.split()[1]} / {peer} (<= {TARGETS[peer]})' for ours, peer in pairs]
    if not native:
        print('No native bf16 here: mmseg bf16 is not run (emulated, slower than fp32); seg int8 is the path auto '
              'takes in eval on trained weights, timed here on random ones without its guard.\n', flush=True)
    print('| model | mode | ' + ' | '.join(columns) + ' | ' + ' | '.join(ratio_columns) + ' |')
    print('|---|---|' + '---|' * (len(columns) + 2), flush=True)
    for model in args.models:
        for mode in args.modes:
            chosen = variants(mode)
            times = {v: [] for v in chosen}
            for r in range(args.rounds):
                k = r % len(chosen)
                for v in chosen[k:] + chosen[:k]:
                    times[v].append(median_s(command(v, model, mode, args)))
                    print(f'  {model} {mode} {v}: {times[v][-1]:.3f} s', file=sys.stderr, flush=True)
            t = {v: statistics.median(x) for v, x in times.items()}
            ratios = []
            for ours, peer in pairs:
                if ours not in t:
                    ratios.append('-')
                    continue
                ratio = t[ours] / t[peer]
                ratios.append(f'{ratio:.2f} {"met" if ratio <= TARGETS[peer] else "not met"}')
            print(f'| {model} | {mode} | ' + ' | '.join(f'{t[v]:.3f} s' if v in t else '-' for v in columns) + ' | '
                  + ' | '.join(ratios) + ' |', flush=True)

if __name__ == '__main__':
    main()
