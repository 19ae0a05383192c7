"""Benchmark the attention ops of ``seg.ops``: fast path against reference, time and memory.

Examples::

    python tools/benchmark_ops.py --markdown docs/benchmarks.md.part --json bench.json
    python tools/benchmark_ops.py --ops pam nonlocal --shapes 97x97 --pam-batch 8 --repeat 1
    python tools/benchmark_ops.py --all-impls --ops pam nonlocal criss_cross --shapes 97x97

What is measured, and how: seg.analysis.op_bench.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from seg.analysis.measure import describe_environment
from seg.analysis.op_bench import MODES, OPS, GiB, cases, format_text, machine_info, run, write_results


def _shape(text: str) -> tuple[int, int]:
    try:
        h, w = (int(p) for p in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'shape must look like 97x97, got {text!r}') from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f'shape sides must be >= 1, got {text!r}')
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ops', nargs='+', choices=OPS, default=list(OPS))
    parser.add_argument('--shapes', nargs='+', type=_shape, default=[(97, 97), (64, 128)],
                        help='feature-map sizes HxW (default 97x97 64x128)')
    parser.add_argument('--batch', nargs='+', type=int, default=[2, 8],
                        help='batch sizes for criss_cross and channel (default 2 8)')
    parser.add_argument('--pam-batch', nargs='+', type=int, default=[2],
                        help='batch sizes for pam and nonlocal, whose cost is quadratic in H*W '
                             '(default 2; B=8 is a separate, reduced run)')
    parser.add_argument('--channels', type=int, default=512, help='C (default 512)')
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
    parser.add_argument('--whole-shape', type=_shape, default=(128, 256),
                        help='whole-image feature map for pam / nonlocal inference (default 128x256)')
    parser.add_argument('--whole-batch', type=int, default=1, help='batch of the whole-image case (default 1)')
    parser.add_argument('--no-whole', action='store_true', help='skip the whole-image case')
    parser.add_argument('--repeat', type=int, default=3,
                        help='most timed runs per implementation and case, after one memory / warm-up '
                             'run (default 3)')
    parser.add_argument('--max-case-s', type=float, default=20.0,
                        help='start no new timed round of a case after its rounds took this long; '
                             'at least one round always runs (default 20)')
    parser.add_argument('--device', nargs='+', default=None,
                        help="devices (default: cpu, and cuda when available)")
    parser.add_argument('--all-impls', action='store_true',
                        help='also time the alternatives behind the dispatch (chunked vs sdpa, ...)')
    parser.add_argument('--max-ref-gib', type=float, default=6.0,
                        help='skip a quadratic reference that would need more than this (default 6)')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    parser.add_argument('--json', type=Path, default=None, help='write the results as JSON here')
    parser.add_argument('--markdown', type=Path, default=None, help='write the tables as Markdown here')
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f'--repeat must be >= 1, got {args.repeat}')
    if min(args.batch + args.pam_batch + [args.whole_batch]) < 1:
        parser.error('batch sizes must be >= 1')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in (args.device or (['cpu'] + (['cuda'] if torch.cuda.is_available() else [])))]
    if any(d.type == 'cuda' for d in devices) and not torch.cuda.is_available():
        raise SystemExit('--device cuda given but CUDA is not available')
    info = machine_info()
    print(f'# {describe_environment(info)}', flush=True)
    todo = cases(args.ops, args.shapes, args.batch, args.pam_batch, args.modes,
                 None if args.no_whole else args.whole_shape, args.whole_batch)
    results, elapsed = run(todo, devices, args.channels, args.repeat, args.all_impls, int(args.max_ref_gib * GiB),
                           args.max_case_s, log=lambda line: print(line, flush=True))
    print()
    print(format_text(results))
    print(f'\n# total {elapsed:.0f} s')
    command = 'python tools/benchmark_ops.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    write_results(results, info, elapsed, command, args.json, args.markdown)
    return 0


if __name__ == '__main__':
    sys.exit(main())
