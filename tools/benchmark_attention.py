"""Benchmark every module of the attention zoo: parameters, FLOPs and latency of one forward.

python tools/benchmark_attention.py [--channels 512] [--height 64] [--width 128] [--batch 1]
    [--warmup 3] [--repeats 10] [--threads N] [--device cpu] [--names se eca ...]
    [--option shuffle.groups=64 ...] [--json results.json]

Prints a markdown table (and the environment); --json also writes the rows and the environment.
The measuring is seg.analysis.attention_bench (numbers from seg.analysis.measure).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from seg.analysis.attention_bench import benchmark, markdown_table, parse_options
from seg.analysis.measure import environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--channels', type=int, default=512)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--names', nargs='+', default=None, help='modules to run (default: all registered)')
    parser.add_argument('--option', action='append', default=[], metavar='NAME.KEY=VALUE',
                        help='a module option, e.g. shuffle.groups=64 (repeatable)')
    parser.add_argument('--json', default=None, metavar='PATH', help='also write the results here')
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f'--threads must be >= 1, got {args.threads}')
        torch.set_num_threads(args.threads)
    try:
        rows = benchmark(args.names, args.channels, args.height, args.width, args.batch, args.warmup,
                         args.repeats, parse_options(args.option), args.device)
    except ValueError as exc:
        parser.error(str(exc))
    env = environment(args.device)
    setting = dict(channels=args.channels, height=args.height, width=args.width, batch=args.batch,
                   warmup=args.warmup, repeats=args.repeats)
    print(f"C={args.channels}, {args.height}x{args.width}, B={args.batch}; median of {args.repeats} forwards after "
          f"{args.warmup} warm-up; torch {env['torch']}, {env['cpu']}, {env['threads']} threads, device {args.device}")
    print(markdown_table(rows))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(environment=env, setting=setting, results=rows), indent=2) + '\n')
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
