"""Compare context heads / attention modules: parameters, FLOPs, latency, memory, accuracy, chart.

python tools/compare.py fcn ccnet ccnet:recurrence=1 danet nonlocal se eca cbam --backbone demo \\
    --train --iters 300 --out work_dirs/compare       # train each on the synthetic data, then compare
python tools/compare.py configs/fcn_r50.py configs/ccnet_r50.py --size 512x1024 --out out/compare
python tools/compare.py --list                        # every usable name (from the registries)

A model is a config path or NAME[:key=value,...]: a decode head (fcn, ccnet, danet, nonlocal, ...)
or a module of the attention zoo in an AttentionHead (se, eca, cbam, ...), built on --backbone.
Accuracy comes from each model's work dir (metrics.json from tools/eval.py --out, or mmengine's
scalars.json); it is blank when there is none.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import torch
from mmengine.config import DictAction

from seg.analysis.compare import (
    BACKBONES,
    available_models,
    parse_size,
    run_comparison,
    to_markdown,
    write_outputs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', help='config paths or NAME[:key=value,...] specs')
    parser.add_argument('--list', action='store_true', help='list the usable names and exit')
    parser.add_argument('--backbone', choices=sorted(BACKBONES), default='demo',
                        help='backbone of the name specs (demo: the CPU demo network; r18 / r50: dilated ResNets)')
    parser.add_argument('--size', type=parse_size, help='input HxW, e.g. 512x1024 (default: 96x192 for demo, '
                        "else the first config's crop_size, else 512x1024)")
    parser.add_argument('--num-classes', type=int, help="class count (default: the backbone preset's)")
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1 ...')
    parser.add_argument('--batch-size', type=int, default=1, help='batch of the timed passes')
    parser.add_argument('--warmup', type=int, default=3, help='untimed passes before timing')
    parser.add_argument('--repeat', type=int, default=10, help='timed passes (median); 0 skips timing')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--work-dirs', nargs='+', help='one work dir per model to read accuracy from')
    parser.add_argument('--out', help='write compare.md, compare.csv and compare.png here')
    parser.add_argument('--chart-x', choices=['latency', 'flops'], default='latency')
    parser.add_argument('--train', action='store_true',
                        help='train every model on the synthetic data first (runs in OUT/runs/NAME)')
    parser.add_argument('--iters', type=int, default=300, help='training iterations per model (--train)')
    parser.add_argument('--train-batch-size', type=int, help="training batch (default: the demo config's)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-workers', type=int, default=2, help='data loader workers of the evaluations (--train)')
    parser.add_argument('--configs-dir', help='the configs/ folder (default: ./configs)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for every training config (--train)')
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        from seg.models.attention import list_attention

        names = available_models()
        print('heads:')
        for name, (kind, target) in sorted(names.items()):
            if kind == 'head':
                print(f'  {name:<16} -> {target}')
        print('attention modules (in an AttentionHead):')
        for name in list_attention():
            how = name if names.get(name) == ('attention', name) else f'attention:attention={name}'
            print(f'  {how:<16} -> AttentionHead(attention={name!r})')
        return 0
    if not args.models:
        parser.error('give at least one model (a name such as ccnet, or a config path); --list shows the names')
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_comparison(
        args.models, backbone=args.backbone, size=args.size, device=args.device, batch=args.batch_size,
        warmup=args.warmup, repeat=args.repeat, work_dirs=args.work_dirs, out_dir=args.out, train=args.train,
        iters=args.iters, train_batch_size=args.train_batch_size, seed=args.seed, num_classes=args.num_classes,
        configs_dir=args.configs_dir, cfg_options=args.cfg_options, num_workers=args.num_workers)
    result.command = 'python tools/compare.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print('\n' + to_markdown(result))
    if args.out:
        paths = write_outputs(result, args.out, args.chart_x)
        print('wrote ' + ', '.join(paths.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
