"""Benchmark of the attention zoo: parameters, FLOPs and latency of one forward of every module.

No paper. Each registered module (:func:`seg.models.attention.list_attention`) is built for C channels
and run in eval mode on a (B, C, H, W) input (default C = 512, 64 x 128, B = 1: the decode-head input
of a 512 x 1024 Cityscapes crop at output stride 8). Per module: its parameters, the FLOPs of one
forward and its median latency, all from :mod:`seg.analysis.measure` (FLOPs count the fused attention
kernels, so PAM and non-local include their attention), and the parameters it adds to a ResNet when
plugged into every block of the four stages, counted on the meta device.
"""
from __future__ import annotations

import ast
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from seg.models.attention import build_attention, list_attention
from seg.models.backbones.resnet import ARCH

from .measure import count_flops, count_parameters, si, time_call

__all__ = ['benchmark', 'markdown_table', 'parse_options', 'resnet_plugin_params']


def resnet_plugin_params(name: str, options: dict[str, Any] | None = None, depth: int = 50) -> int | None:
    """Parameters that ``name`` adds to a ResNet when plugged into every block of the four stages.

    Returns:
        The count, or ``None`` if the options do not fit one of the stage widths.
    """
    block, layers = ARCH[depth]
    total = 0
    for base, count in zip((64, 128, 256, 512), layers):
        try:
            with torch.device('meta'):
                module = build_attention(dict(type=name, **(options or {})), base * block.expansion)
        except ValueError:
            return None
        total += count * count_parameters(module)
    return total


def benchmark(names: Sequence[str] | None = None, channels: int = 512, height: int = 64, width: int = 128,
              batch: int = 1, warmup: int = 3, repeats: int = 10,
              options: dict[str, dict[str, Any]] | None = None, device: str = 'cpu',
              seed: int = 0) -> list[dict[str, Any]]:
    """Measure every module of ``names`` (all registered ones by default).

    Returns:
        One dict per module: ``name``, ``type`` (class name), ``options``, ``params``, ``flops``,
        ``gflops``, ``ms`` (median), ``ms_min``, ``times_ms`` and ``r50_plugin_params``.

    Raises:
        ValueError: an unknown name, options for a module not benchmarked, options the module
            rejects, or ``repeats`` < 1.
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
        with torch.no_grad():
            flops = count_flops(lambda m=module, t=x: m(t))
        with torch.inference_mode():
            times = [s * 1e3 for s in time_call(lambda m=module, t=x: m(t), dev, warmup, repeats)]
        rows.append(dict(
            name=name, type=type(module).__name__, options=opts, params=count_parameters(module), flops=flops,
            gflops=flops / 1e9, ms=statistics.median(times), ms_min=min(times), times_ms=times,
            r50_plugin_params=resnet_plugin_params(name, opts)))
    return rows


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
