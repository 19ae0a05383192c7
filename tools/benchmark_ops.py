"""Benchmark the attention ops of ``seg.ops``: fast path against reference, time and memory.

For each op, shape, batch and mode (``fwd``: inference forward under ``torch.no_grad``;
``fwdbwd``: forward and backward of all inputs) it prints the median wall time and the peak
tensor memory of the fast path next to its baseline, and their ratios (fast / baseline):

* ``criss_cross``: ``lse`` (row + column attention merged by log-sum-exp) against ``einsum``
  (the loop reference is far too slow to time); q/k width C/8, value width C.
* ``pam``: DANet position attention, q/k width C/8, value width C, scale 1, through
  ``position_attention`` against ``position_attention_reference``.
* ``nonlocal``: embedded-Gaussian non-local, q/k and value width C/2, scale 1/sqrt(C/2).
* ``channel``: DANet channel attention on (B, C, H, W).

Peak memory is ``seg.ops.memory.peak_memory``: on CPU the running sum of the PyTorch CPU
allocator's allocation / free events recorded by ``torch.profiler`` (profile_memory=True),
i.e. the most tensor bytes the call held at once (inputs excluded, output and gradients
included); on CUDA ``max_memory_allocated`` above the memory allocated before the call.
Every run is timed (wall clock, inside the profiler session, which costs about 2% on the
most op-dense case, criss-cross) and measured; the time shown is the median over up to
``--repeat`` rounds, fewer when a case's rounds pass ``--max-case-s``.  Fast and baseline
runs are interleaved so that load from other processes hits both alike.

Inputs are random with q and k scaled so that the logits have unit variance (very large
logits make exp() produce subnormal floats, which are slow on CPU and unlike trained
features).

Examples::

    python tools/benchmark_ops.py --markdown docs/benchmarks.md.part --json bench.json
    python tools/benchmark_ops.py --ops pam nonlocal --shapes 97x97 --pam-batch 8 --repeat 1
    python tools/benchmark_ops.py --all-impls --ops pam nonlocal criss_cross --shapes 97x97
"""
from __future__ import annotations

import os

os.environ.setdefault('KINETO_LOG_LEVEL', '6')  # silence the profiler's per-session log lines

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seg.ops import (  # noqa: E402
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
from seg.ops.memory import peak_memory  # noqa: E402

OPS = ('criss_cross', 'pam', 'nonlocal', 'channel')
QUADRATIC_OPS = ('pam', 'nonlocal')
MODES = ('fwd', 'fwdbwd')
GiB = 2 ** 30
MiB = 2 ** 20


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

def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


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
    """(wall seconds, peak bytes) of one run; the clock runs inside the memory measurement.

    The gradients of the previous run are dropped before the measurement starts: freeing
    them inside it would credit the run with memory it did not allocate.
    """
    for t in inputs:
        t.grad = None
    gc.collect()
    _sync(device)
    elapsed: List[float] = []

    def timed() -> None:
        start = time.perf_counter()
        run()
        _sync(device)
        elapsed.append(time.perf_counter() - start)

    _, peak = peak_memory(timed, device)
    return elapsed[0], peak


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

def _fmt_time(t: Optional[float]) -> str:
    if t is None:
        return '-'
    return f'{t * 1e3:.1f} ms' if t < 1 else f'{t:.2f} s'


def _fmt_mem(b: Optional[int]) -> str:
    if b is None:
        return '-'
    return f'{b / GiB:.2f} GiB' if b >= GiB else f'{b / MiB:.1f} MiB'


def _fmt_ratio(r: Optional[float]) -> str:
    return '-' if r is None else f'{r:.2f}x'


HEADER = ('device', 'op', 'shape', 'B', 'mode', 'fast', 'baseline', 'runs', 'time fast', 'time base',
          'time ratio', 'peak mem fast', 'peak mem base', 'mem ratio', 'note')


def _row(r: Result) -> Tuple[str, ...]:
    return (r.device, r.op, r.shape, str(r.batch), r.mode, r.impl, r.baseline, str(len(r.times_s)),
            _fmt_time(r.time_s),
            _fmt_time(r.base_time_s), _fmt_ratio(r.time_ratio), _fmt_mem(r.peak_bytes),
            _fmt_mem(r.base_peak_bytes), _fmt_ratio(r.mem_ratio), r.note)


def format_text(results: Sequence[Result]) -> str:
    rows = [HEADER] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return '\n'.join('  '.join(cell.ljust(wd) for cell, wd in zip(row, widths)).rstrip() for row in rows)


def format_markdown(results: Sequence[Result]) -> str:
    lines = ['| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
    lines += ['| ' + ' | '.join(_row(r)) + ' |' for r in results]
    return '\n'.join(lines)


def machine_info() -> Dict[str, object]:
    """CPU model, core / thread counts, torch version, GPU if any."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith('Model name:'):
                model = line.split(':', 1)[1].strip()
    except OSError:
        pass
    info: Dict[str, object] = {
        'cpu_model': model, 'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
        'torch': torch.__version__, 'python': platform.python_version(),
        'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info['load_average'] = os.getloadavg()
    except OSError:
        pass
    return info


# ----------------------------------------------------------------------------- main

def _shape(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(p) for p in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'shape must look like 97x97, got {text!r}') from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f'shape sides must be >= 1, got {text!r}')
    return h, w


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
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


def main(argv: Optional[Sequence[str]] = None) -> List[Result]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
    devices = [torch.device(d) for d in devices]
    for d in devices:
        if d.type == 'cuda' and not torch.cuda.is_available():
            raise SystemExit('--device cuda given but CUDA is not available')
    info = machine_info()
    print(f"# {info['cpu_model']}, {info['cpu_count']} CPUs, torch {info['torch']} "
          f"({info['torch_threads']} threads), GPU: {info['cuda'] or 'none'}", flush=True)
    cases = []
    for op in args.ops:
        batches = args.pam_batch if op in QUADRATIC_OPS else args.batch
        for shape in args.shapes:
            for batch in batches:
                for mode in args.modes:
                    cases.append((op, shape, batch, mode))
        if op in QUADRATIC_OPS and not args.no_whole:
            cases.append((op, args.whole_shape, args.whole_batch, 'fwd'))
    results: List[Result] = []
    start = time.perf_counter()
    for device in devices:
        for op, shape, batch, mode in cases:
            t0 = time.perf_counter()
            rows = bench_case(op, shape, batch, mode, args.channels, device, args.repeat,
                              args.all_impls, int(args.max_ref_gib * GiB), args.max_case_s)
            results.extend(rows)
            for r in rows:
                print(' '.join(_row(r)) + f'   [{time.perf_counter() - t0:.0f} s]', flush=True)
    elapsed = time.perf_counter() - start
    print()
    print(format_text(results))
    print(f'\n# total {elapsed:.0f} s')
    command = 'python tools/benchmark_ops.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {'command': command, 'machine': info, 'elapsed_s': elapsed,
                   'results': [dict(asdict(r), time_ratio=r.time_ratio, mem_ratio=r.mem_ratio)
                               for r in results]}
        args.json.write_text(json.dumps(payload, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        head = (f"Command: `{command}`\n\nMachine: {info['cpu_model']}, {info['cpu_count']} CPUs, "
                f"torch {info['torch']} ({info['torch_threads']} threads), GPU: {info['cuda'] or 'none'}; "
                f'total {elapsed:.0f} s.\n\n')
        args.markdown.write_text(head + format_markdown(results) + '\n')
    return results


if __name__ == '__main__':
    main()
