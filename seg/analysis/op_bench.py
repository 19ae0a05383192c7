"""Benchmark of the attention ops of ``seg.ops``: each fast path against its baseline, time and memory.

No paper. For each op, shape, batch and mode (``fwd``: inference forward under ``torch.no_grad``;
``fwdbwd``: forward and backward of all inputs), the median wall time and the peak tensor memory of
the fast path next to its baseline, and their ratios (fast / baseline):

* ``criss_cross``: ``lse`` (row + column attention merged by log-sum-exp) against ``einsum``
  (the loop reference is far too slow to time); q/k width C/8, value width C.
* ``pam``: DANet position attention, q/k width C/8, value width C, scale 1, through
  ``position_attention`` against ``position_attention_reference``.
* ``nonlocal``: embedded-Gaussian non-local, q/k and value width C/2, scale 1/sqrt(C/2).
* ``channel``: DANet channel attention on (B, C, H, W).

Peak memory is :func:`seg.analysis.measure.peak_memory`; every run is timed by
:func:`seg.analysis.measure.time_call` inside that measurement (which costs about 2% on the most
op-dense case, criss-cross); the time shown is the median over up to ``repeat`` rounds, fewer when a
case's rounds pass ``max_case_s``. Fast and baseline runs are interleaved so that load from other
processes hits both alike. Inputs are random with q and k scaled
so that the logits have unit variance (very large logits make exp() produce subnormal floats, which
are slow on CPU and unlike trained features).
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from seg.ops import (
    CRISS_CROSS_BACKENDS,
    POSITION_ATTENTION_BACKENDS,
    channel_attention,
    channel_attention_reference,
    criss_cross_attention,
    criss_cross_attention_einsum,
    criss_cross_attention_lse,
    position_attention,
    position_attention_chunked,
    position_attention_reference,
    position_attention_sdpa,
)

from .measure import describe_environment, duration, environment, peak_memory, size, sync, time_call

__all__ = ['GiB', 'MODES', 'OPS', 'QUADRATIC_OPS', 'Result', 'bench_case', 'cases', 'format_markdown',
           'format_text', 'machine_info', 'row', 'run', 'write_results']

OPS = ('criss_cross', 'pam', 'nonlocal', 'channel')
QUADRATIC_OPS = ('pam', 'nonlocal')
MODES = ('fwd', 'fwdbwd')
GiB = 2 ** 30


@dataclass
class Result:
    """One row: a fast implementation against the op's baseline on one case."""

    device: str
    op: str
    shape: str
    batch: int
    mode: str
    impl: str
    baseline: str
    time_s: Optional[float]
    base_time_s: Optional[float]
    peak_bytes: Optional[int]
    base_peak_bytes: Optional[int]
    times_s: List[float] = field(default_factory=list)
    base_times_s: List[float] = field(default_factory=list)
    note: str = ''

    @property
    def time_ratio(self) -> Optional[float]:
        if self.time_s is None or not self.base_time_s:
            return None
        return self.time_s / self.base_time_s

    @property
    def mem_ratio(self) -> Optional[float]:
        if self.peak_bytes is None or not self.base_peak_bytes:
            return None
        return self.peak_bytes / self.base_peak_bytes


# ----------------------------------------------------------------------------- op set-up

Inputs = Tuple[torch.Tensor, ...]


def _widths(op: str, channels: int) -> Tuple[int, int, float]:
    """(q/k width, value width, logit scale) of an op at C = channels."""
    if op in ('criss_cross', 'pam'):
        return max(1, channels // 8), channels, 1.0
    if op == 'nonlocal':
        inter = max(1, channels // 2)
        return inter, inter, inter ** -0.5
    return channels, channels, 1.0


def make_inputs(op: str, batch: int, channels: int, h: int, w: int, device: torch.device,
                grad: bool, seed: int = 0) -> Inputs:
    """Random inputs with unit-variance logits (see the module docstring)."""
    gen = torch.Generator(device='cpu').manual_seed(seed)
    if op == 'channel':
        x = torch.randn(batch, channels, h, w, generator=gen) * (h * w) ** -0.25
        return (x.to(device).requires_grad_(grad),)
    c_qk, c_v, scale = _widths(op, channels)
    std = (scale * math.sqrt(c_qk)) ** -0.5
    q = torch.randn(batch, c_qk, h, w, generator=gen) * std
    k = torch.randn(batch, c_qk, h, w, generator=gen) * std
    v = torch.randn(batch, c_v, h, w, generator=gen)
    return tuple(t.to(device).requires_grad_(grad) for t in (q, k, v))


def _position(fn: Callable[..., torch.Tensor], scale: float) -> Callable[..., torch.Tensor]:
    return lambda q, k, v: fn(q, k, v, scale)


def implementations(op: str, channels: int, device: torch.device, all_impls: bool
                    ) -> Tuple[Tuple[str, Callable], List[Tuple[str, Callable]]]:
    """(baseline, [fast candidates]) for an op; names say what the dispatcher resolves to."""
    dev = device.type
    if op == 'criss_cross':
        chosen = CRISS_CROSS_BACKENDS.get(dev, 'einsum')
        base = ('einsum' + ('*' if chosen == 'einsum' else ''), criss_cross_attention_einsum)
        fast = [('lse' + ('*' if chosen == 'lse' else ''), criss_cross_attention_lse)]
        if all_impls:
            fast.append((f'dispatch({chosen})', criss_cross_attention))
        return base, fast
    if op == 'channel':
        return ('reference', channel_attention_reference), [('fast*', channel_attention)]
    c_qk, c_v, scale = _widths(op, channels)
    base = ('reference', _position(position_attention_reference, scale))
    chosen = POSITION_ATTENTION_BACKENDS.get(dev, 'chunked')
    if chosen == 'auto':
        chosen = 'sdpa' if c_qk == c_v else 'chunked'
    if all_impls:
        pad = '' if c_qk == c_v or dev != 'cpu' else '(padded)'
        fast = [('chunked' + ('*' if chosen == 'chunked' else ''), _position(position_attention_chunked, scale)),
                ('sdpa' + pad + ('*' if chosen == 'sdpa' else ''), _position(position_attention_sdpa, scale))]
    else:
        fast = [(f'{chosen}*', _position(position_attention, scale))]
    return base, fast


def reference_bytes_estimate(op: str, batch: int, h: int, w: int, mode: str) -> int:
    """Rough size of the N x N tensors the literal reference of a quadratic op holds at once."""
    if op not in QUADRATIC_OPS:
        return 0
    n = h * w
    return (3 if mode == 'fwdbwd' else 2) * batch * n * n * 4


# ----------------------------------------------------------------------------- measuring

def _step(fn: Callable, inputs: Inputs, mode: str, grad_out: Optional[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        if mode == 'fwd':
            with torch.no_grad():
                fn(*inputs)
        else:
            out = fn(*inputs)
            out.backward(grad_out)
    return run


def _measured(run: Callable[[], None], inputs: Inputs, device: torch.device) -> Tuple[float, int]:
    """(wall seconds, peak bytes) of one run: :func:`seg.analysis.measure.time_call` of it inside
    :func:`seg.analysis.measure.peak_memory`.

    The gradients of the previous run are dropped before the measurement starts: freeing
    them inside it would credit the run with memory it did not allocate.
    """
    for t in inputs:
        t.grad = None
    gc.collect()
    sync(device)
    return peak_memory(lambda: time_call(run, device, warmup=0, repeat=1)[0], device)


def bench_case(op: str, shape: Tuple[int, int], batch: int, mode: str, channels: int,
               device: torch.device, repeat: int, all_impls: bool, max_ref_bytes: int,
               max_case_s: float = math.inf) -> List[Result]:
    """Measure the baseline and every fast candidate of one case, runs interleaved.

    Up to ``repeat`` rounds run, each timing every implementation once and measuring its
    peak memory in the same run; no new round starts once the rounds have taken
    ``max_case_s`` seconds (at least one always runs).  There is no separate warm-up: the
    median of three rounds drops a slow first run, and a case slow enough to get a single
    round lasts seconds, next to which warm-up costs are small.
    """
    h, w = shape
    inputs = make_inputs(op, batch, channels, h, w, device, grad=(mode == 'fwdbwd'))
    (base_name, base_fn), fast = implementations(op, channels, device, all_impls)
    grad_out = None
    if mode == 'fwdbwd':
        with torch.no_grad():
            out_channels = inputs[-1].shape[1]
            grad_out = torch.randn(batch, out_channels, h, w, device=device)
    estimate = reference_bytes_estimate(op, batch, h, w, mode)
    run_base = estimate <= max_ref_bytes
    note = '' if run_base else f'reference not run (needs about {estimate / GiB:.1f} GiB)'
    runners: Dict[str, Callable[[], None]] = {name: _step(fn, inputs, mode, grad_out) for name, fn in fast}
    if run_base:
        runners[base_name] = _step(base_fn, inputs, mode, grad_out)
    times: Dict[str, List[float]] = {name: [] for name in runners}
    peaks: Dict[str, int] = {name: 0 for name in runners}
    rounds_start = time.perf_counter()
    for round_index in range(repeat):
        if round_index > 0 and time.perf_counter() - rounds_start > max_case_s:
            break
        for name, run in runners.items():
            elapsed, peak = _measured(run, inputs, device)
            times[name].append(elapsed)
            peaks[name] = max(peaks[name], peak)
    results = []
    for name, _ in fast:
        results.append(Result(
            device=device.type, op=op, shape=f'{h}x{w}', batch=batch, mode=mode, impl=name,
            baseline=base_name, time_s=statistics.median(times[name]),
            base_time_s=statistics.median(times[base_name]) if run_base else None,
            peak_bytes=peaks[name], base_peak_bytes=peaks.get(base_name),
            times_s=times[name], base_times_s=times.get(base_name, []), note=note))
    del inputs, grad_out, runners
    gc.collect()
    return results


# ----------------------------------------------------------------------------- reporting

def _fmt_ratio(r: Optional[float]) -> str:
    return '-' if r is None else f'{r:.2f}x'


HEADER = ('device', 'op', 'shape', 'B', 'mode', 'fast', 'baseline', 'runs', 'time fast', 'time base',
          'time ratio', 'peak mem fast', 'peak mem base', 'mem ratio', 'note')


def row(r: Result) -> Tuple[str, ...]:
    return (r.device, r.op, r.shape, str(r.batch), r.mode, r.impl, r.baseline, str(len(r.times_s)),
            duration(r.time_s),
            duration(r.base_time_s), _fmt_ratio(r.time_ratio), size(r.peak_bytes),
            size(r.base_peak_bytes), _fmt_ratio(r.mem_ratio), r.note)


def format_text(results: Sequence[Result]) -> str:
    rows = [HEADER] + [row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return '\n'.join('  '.join(cell.ljust(wd) for cell, wd in zip(row, widths)).rstrip() for row in rows)


def format_markdown(results: Sequence[Result]) -> str:
    lines = ['| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
    lines += ['| ' + ' | '.join(row(r)) + ' |' for r in results]
    return '\n'.join(lines)


def machine_info() -> Dict[str, object]:
    """:func:`seg.analysis.measure.environment` of the benchmark's devices (CUDA when available)."""
    return environment('cuda' if torch.cuda.is_available() else 'cpu')


def cases(ops: Sequence[str], shapes: Sequence[Tuple[int, int]], batches: Sequence[int], pam_batches: Sequence[int],
          modes: Sequence[str], whole_shape: Optional[Tuple[int, int]], whole_batch: int = 1
          ) -> List[Tuple[str, Tuple[int, int], int, str]]:
    """Every (op, shape, batch, mode) to run; the quadratic ops get ``pam_batches`` and a whole-image
    inference case at ``whole_shape`` (None: none)."""
    out = []
    for op in ops:
        for shape in shapes:
            for batch in (pam_batches if op in QUADRATIC_OPS else batches):
                for mode in modes:
                    out.append((op, shape, batch, mode))
        if op in QUADRATIC_OPS and whole_shape is not None:
            out.append((op, whole_shape, whole_batch, 'fwd'))
    return out


def run(todo: Sequence[Tuple[str, Tuple[int, int], int, str]], devices: Sequence[torch.device], channels: int,
        repeat: int, all_impls: bool, max_ref_bytes: int, max_case_s: float,
        log: Callable[[str], None] = print) -> Tuple[List[Result], float]:
    """Run every case on every device; returns the rows and the total seconds."""
    results: List[Result] = []
    start = time.perf_counter()
    for device in devices:
        for op, shape, batch, mode in todo:
            t0 = time.perf_counter()
            rows = bench_case(op, shape, batch, mode, channels, device, repeat, all_impls, max_ref_bytes, max_case_s)
            results.extend(rows)
            for r in rows:
                log(' '.join(row(r)) + f'   [{time.perf_counter() - t0:.0f} s]')
    return results, time.perf_counter() - start


def write_results(results: Sequence[Result], info: Dict[str, object], elapsed: float, command: str,
                  json_path: Optional[str] = None, markdown_path: Optional[str] = None) -> None:
    """The rows as JSON (with the machine and the command) and as a markdown table."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    machine = dict(info)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        payload = {'command': command, 'machine': machine, 'elapsed_s': elapsed,
                   'results': [dict(asdict(r), time_ratio=r.time_ratio, mem_ratio=r.mem_ratio) for r in results]}
        Path(json_path).write_text(json.dumps(payload, indent=2))
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        head = f'Command: `{command}`\n\nMachine: {describe_environment(machine)}; total {elapsed:.0f} s.\n\n'
        Path(markdown_path).write_text(head + format_markdown(results) + '\n')
