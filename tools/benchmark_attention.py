"""Benchmark every module of the attention zoo: parameters, FLOPs and latency of one forward.

Each registered module (``seg.models.attention.list_attention()``) is built for C channels and run
in eval mode on a (B, C, H, W) input (default C = 512, 64 x 128, B = 1: the decode-head input of a
512 x 1024 Cityscapes crop at output stride 8). Reported per module:

- ``params``: its parameter count;
- ``gflops``: FLOPs of one forward counted by ``torch.utils.flop_counter.FlopCounterMode``, which
  counts matrix products and convolutions (2 FLOPs per multiply-add) but not elementwise ops,
  pooling or normalisation: a module made only of those (SimAM) counts 0;
- ``ms``: the median wall-clock latency of one forward after ``--warmup`` untimed runs;
- ``r50_plugin_params``: the parameters it adds to a ResNet-50 when plugged into every block of
  the four stages (``DilatedResNet(block_attention=...)``), counted on the meta device with the
  same options, or ``None`` where those options do not fit a stage's width.

Usage::

    python tools/benchmark_attention.py [--channels 512] [--height 64] [--width 128] [--batch 1]
        [--warmup 3] [--repeats 10] [--threads N] [--device cpu] [--names se eca ...]
        [--option shuffle.groups=64 ...] [--json results.json]

It prints a markdown table (and the environment) and, with ``--json``, writes the rows and the
environment to a file.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

if __package__ in (None, ''):  # run as a script: make ``seg`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seg.models.attention import build_attention, list_attention  # noqa: E402
from seg.models.backbones.resnet import ARCH  # noqa: E402

__all__ = ['benchmark', 'count_flops', 'count_params', 'cpu_model', 'environment', 'main',
           'markdown_table', 'measure_latency', 'parse_options', 'resnet_plugin_params', 'si']

# Output widths of the four stages of a ResNet-50 (Bottleneck expansion 4).
R50_WIDTHS = (256, 512, 1024, 2048)


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``module(x)`` as counted by ``FlopCounterMode`` (matmuls and convolutions only).

    Args:
        module: the module, already in the wanted mode (eval for the benchmark).
        x: its input.

    Returns:
        The total FLOP count (2 per multiply-add).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure_latency(module: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10) -> list[float]:
    """Wall-clock times of single forwards, in milliseconds, after ``warmup`` untimed ones.

    Args:
        module: the module (eval mode is the caller's choice).
        x: its input, on the module's device.
        warmup: untimed forwards first (allocator, kernel selection, caches).
        repeats: timed forwards (>= 1).

    Returns:
        ``repeats`` times in milliseconds, in the order measured.

    Raises:
        ValueError: ``warmup`` < 0 or ``repeats`` < 1.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f'need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}')
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            _sync(x.device)
            start = time.perf_counter()
            module(x)
            _sync(x.device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def resnet_plugin_params(name: str, options: dict[str, Any] | None = None, depth: int = 50) -> int | None:
    """Parameters that ``name`` adds to a ResNet when plugged into every block of the four stages.

    Counted on the meta device (nothing is allocated) from the stage widths and block counts of
    ``seg.models.backbones.resnet.ARCH``.

    Args:
        name: a registered attention name.
        options: the module's options (the same at every width).
        depth: a ResNet depth of ``ARCH`` (18, 34, 50, 101, 152).

    Returns:
        The parameter count, or ``None`` if the options do not fit one of the stage widths
        (e.g. ShuffleAttention's ``groups``).
    """
    block, layers = ARCH[depth]
    total = 0
    for base, count in zip((64, 128, 256, 512), layers):
        width = base * block.expansion
        try:
            with torch.device('meta'):
                module = build_attention(dict(type=name, **(options or {})), width)
        except ValueError:
            return None
        total += count * count_params(module)
    return total


def benchmark(names: Sequence[str] | None = None, channels: int = 512, height: int = 64, width: int = 128,
              batch: int = 1, warmup: int = 3, repeats: int = 10,
              options: dict[str, dict[str, Any]] | None = None, device: str = 'cpu',
              seed: int = 0) -> list[dict[str, Any]]:
    """Measure every module of ``names`` (all registered ones by default).

    Args:
        names: attention names; ``None`` for ``list_attention()``.
        channels: C of the (B, C, H, W) input.
        height: H.
        width: W.
        batch: B.
        warmup: untimed forwards before the timed ones.
        repeats: timed forwards; the median is reported.
        options: per-name module options, e.g. ``{'shuffle': {'groups': 4}}``.
        device: 'cpu' or a CUDA device.
        seed: seed of the weights and of the input.

    Returns:
        One dict per module: ``name``, ``type`` (class name), ``options``, ``params``, ``flops``,
        ``gflops``, ``ms`` (median), ``ms_min``, ``times_ms`` and ``r50_plugin_params``.

    Raises:
        ValueError: an unknown name, options for a module not benchmarked, or options the
            module rejects.
    """
    names = list(list_attention() if names is None else names)
    options = dict(options or {})
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"options given for {', '.join(stray)}, which are not benchmarked "
                         f"(benchmarked: {', '.join(names)})")
    dev = torch.device(device)
    rows = []
    for name in names:
        opts = dict(options.get(name, {}))
        torch.manual_seed(seed)
        module = build_attention(dict(type=name, **opts), channels).to(dev).eval()
        x = torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed)).to(dev)
        flops = count_flops(module, x)
        times = measure_latency(module, x, warmup, repeats)
        rows.append(dict(
            name=name, type=type(module).__name__, options=opts, params=count_params(module), flops=flops,
            gflops=flops / 1e9, ms=statistics.median(times), ms_min=min(times), times_ms=times,
            r50_plugin_params=resnet_plugin_params(name, opts)))
    return rows


def si(value: float) -> str:
    """``value`` with an SI prefix and 3 significant digits: 0, 5.12 k, 1.74 M, 107 G."""
    for factor, prefix in ((1e12, ' T'), (1e9, ' G'), (1e6, ' M'), (1e3, ' k')):
        if abs(value) >= factor:
            return f'{value / factor:.3g}{prefix}'
    return f'{value:.3g}'


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`benchmark` as a markdown table."""
    lines = ['| module | options | params | FLOPs | median ms | min ms | ResNet-50 plug-in params |',
             '|---|---|---:|---:|---:|---:|---:|']
    for r in rows:
        opts = ', '.join(f'{k}={v!r}' for k, v in r['options'].items()) or '-'
        plugin = 'n/a' if r['r50_plugin_params'] is None else si(r['r50_plugin_params'])
        lines.append(f"| {r['name']} | {opts} | {r['params']:,} | {si(r['flops'])} | {r['ms']:.2f} | "
                     f"{r['ms_min']:.2f} | {plugin} |")
    return '\n'.join(lines)


def cpu_model() -> str:
    """The CPU model name (``lscpu``'s "Model name", read from /proc/cpuinfo), or the platform's."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = 'cpu') -> dict[str, Any]:
    """Where the numbers were taken: torch version, CPU model, thread count, device."""
    env = dict(torch=torch.__version__, cpu=cpu_model(), threads=torch.get_num_threads(),
               cpu_count=os.cpu_count(), device=device, python=platform.python_version())
    if torch.device(device).type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return env


def parse_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parse ``NAME.KEY=VALUE`` items (VALUE a Python literal, else a string) into per-name options.

    Raises:
        ValueError: an item not of the form ``NAME.KEY=VALUE``.
    """
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, raw = item.partition('=')
        name, dot, key = head.partition('.')
        if not sep or not dot or not name or not key:
            raise ValueError(f'--option expects NAME.KEY=VALUE (e.g. shuffle.groups=64), got {item!r}')
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        options.setdefault(name, {})[key] = value
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--channels', type=int, default=512)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch\'s)')
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
        options = parse_options(args.option)
        rows = benchmark(args.names, args.channels, args.height, args.width, args.batch, args.warmup,
                         args.repeats, options, args.device)
    except ValueError as exc:
        parser.error(str(exc))
    env = environment(args.device)
    setting = dict(channels=args.channels, height=args.height, width=args.width, batch=args.batch,
                   warmup=args.warmup, repeats=args.repeats)
    print(f"C={args.channels}, {args.height}x{args.width}, B={args.batch}; median of {args.repeats} "
          f"forwards after {args.warmup} warm-up; torch {env['torch']}, {env['cpu']}, "
          f"{env['threads']} threads, device {args.device}")
    print(markdown_table(rows))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(environment=env, setting=setting, results=rows), indent=2) + '\n')
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
