"""Compare heads and attention modules: parameters, FLOPs, latency, memory, and accuracy over seeds.

python tools/compare.py fcn ccnet danet nonlocal se cbam --data configs/_base_/datasets/my_data.py \\
    --backbone r18 --train --iters 2000 --seeds 3 --out work_dirs/cmp [--parallel 2]
python tools/compare.py fcn psp ccnet danet --recipe configs/ccnet/ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py \\
    --seeds 3 --plan work_dirs/cs          # then: bash work_dirs/cs/plan.sh (or a SLURM array), and
python tools/compare.py --collect work_dirs/cs
python tools/compare.py configs/fcn_r50.py configs/ccnet_r50.py --size 512x1024 --out out/compare
python tools/compare.py --list

A model is a config path or NAME[:key=value,...]: a decode head (fcn, ccnet, danet, ...) or a module
of the attention zoo in an AttentionHead (nonlocal, criss_cross, se, eca, cbam, ...), built on
--backbone. With --train every model is trained with one schedule on --data (default: the synthetic
scenes), once per seed, into OUT/runs/<model>/seed<k>; a rerun skips finished runs and resumes the
others. OUT/report.md has mean +- std and 95% intervals over the seeds and the difference from the
first model with a bootstrap interval; OUT/results.json has everything.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from mmengine.config import DictAction

from seg.analysis.report import to_markdown
from seg.analysis.specs import BACKBONES, available_models, parse_size
from seg.apis.compare import CompareSettings, LaunchSettings, collect_comparison, run_comparison, write_report

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', help='config paths or NAME[:key=value,...] specs')
    parser.add_argument('--list', action='store_true', help='list the usable names and exit')
    parser.add_argument('--recipe', help="training config every run starts from: data, optimizer, schedule, batch, crop, "
                        "backbone and its ImageNet weights (default: configs/demo_ccnet.py, the CPU demo)")
    parser.add_argument('--backbone', choices=sorted(BACKBONES),
                        help="backbone preset of the name specs (demo, r18, r50, r101 with the recipes' ImageNet "
                             "weights); default: the recipe's model")
    parser.add_argument('--data', help='dataset config with train_dataloader and val_dataloader (--train; '
                        'default: the synthetic scenes)')
    parser.add_argument('--size', type=parse_size, help='input HxW of FLOPs and timings, e.g. 512x1024')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1 ...')
    parser.add_argument('--batch-size', type=int, default=1, help='batch of the timed passes')
    parser.add_argument('--warmup', type=int, default=3, help='untimed passes before timing')
    parser.add_argument('--repeat', type=int, default=10, help='timed passes (median); 0 skips timing')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument('--work-dirs', nargs='+', help='one work dir per model to read accuracy from')
    parser.add_argument('--out', help='output folder: runs, report.md, results.json, compare.csv, charts')
    parser.add_argument('--chart-x', choices=['latency', 'flops'], default='latency')
    parser.add_argument('--train', action='store_true', help='train every model (per seed) before comparing')
    parser.add_argument('--iters', type=int, help="training iterations per run (default: the recipe's; 300 for the demo)")
    parser.add_argument('--plan', metavar='OUT', help='write the runs as jobs (OUT/plan.sh, configs) and stop')
    parser.add_argument('--collect', metavar='OUT', help='evaluate the finished runs of a plan and write its report')
    parser.add_argument('--parallel', type=int, default=1, help='runs trained at once with --train')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help='pytorch: each run under torchrun DDP (--nproc-per-node processes)')
    parser.add_argument('--nproc-per-node', type=int, default=1)
    parser.add_argument('--threads-per-job', type=int, help='CPU threads of each run (default: cores / --parallel)')
    parser.add_argument('--seeds', type=int, default=1, help='runs per model, seeds 0 .. N-1')
    parser.add_argument('--train-batch-size', type=int, help="training batch (default: the data config's)")
    parser.add_argument('--bootstrap', type=int, default=1000, help='bootstrap replicates of the differences')
    parser.add_argument('--num-workers', type=int, default=2, help='data loader workers of the evaluations')
    parser.add_argument('--precision', choices=['auto', 'fp32', 'bf16', 'fp16'], default='auto',
                        help="training, evaluation and timing ('auto': bf16 where the hardware has it)")
    parser.add_argument('--channels-last', choices=['auto', 'on', 'off'], default='auto')
    parser.add_argument('--configs-dir', default=str(CONFIGS), help='the configs/ folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for every training config')
    args = parser.parse_args(argv)
    if args.list:
        for name, (kind, target) in sorted(available_models().items()):
            print(f'  {name:<16} {kind:<9} -> {target if kind == "head" else f"AttentionHead({target!r})"}')
        return 0
    command = 'python tools/compare.py ' + ' '.join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.collect:
        result = collect_comparison(args.collect)
        out = args.out or args.collect
    else:
        if not args.models:
            parser.error('give at least one model (a name such as ccnet, or a config path); --list shows the names')
        settings = CompareSettings(
            configs_dir=args.configs_dir, recipe=args.recipe, backbone=args.backbone, size=args.size,
            device=args.device, batch=args.batch_size, warmup=args.warmup, repeat=args.repeat, train=args.train,
            data=args.data, iters=args.iters, train_batch_size=args.train_batch_size, seeds=args.seeds,
            num_workers=args.num_workers, cfg_options=args.cfg_options, work_dirs=args.work_dirs,
            out_dir=args.plan or args.out, bootstrap=args.bootstrap, precision=args.precision,
            channels_last={'auto': 'auto', 'on': True, 'off': False}[args.channels_last], plan_only=bool(args.plan),
            launch=LaunchSettings(args.parallel, args.launcher, args.nproc_per_node, args.threads_per_job))
        result = run_comparison(args.models, settings, command=command)
        out = args.out
        if result is None:
            return 0
        result.command = command
    print('\n' + to_markdown(result))
    if out:
        paths = write_report(result, out, args.chart_x)
        print('wrote ' + ', '.join(paths.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
