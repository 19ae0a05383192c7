"""The one measuring library of ``seg``: parameters, FLOPs, peak memory, latency, and how to print them.

Every number of one kind in ``seg`` -- the comparison tool, the op and attention benchmarks, the
model benchmark, the docs -- comes from one function here:

* :func:`count_parameters`: parameter elements, shared parameters once.
* :func:`count_flops`: ``torch.utils.flop_counter.FlopCounterMode`` at 2 FLOPs per multiply-add of
  convolutions and matrix products (``mm``, ``bmm``, ``baddbmm``, einsums lowered to them) and of the
  fused attention kernels: the CUDA flash / memory-efficient / cuDNN kernels the counter knows,
  plus the CPU flash kernel (``_scaled_dot_product_flash_attention_for_cpu``, forward and backward),
  which it does not know and which :func:`seg.ops.position_attention` runs on CPU. Norms,
  activations, softmax, pooling, bias additions and interpolation count 0.
* :func:`peak_memory`: the most tensor bytes a call held at once. CUDA:
  ``torch.cuda.max_memory_allocated`` above what was allocated before. CPU (no allocator counters):
  the running sum of the allocation and free events of PyTorch's CPU allocator recorded by
  ``torch.profiler`` (``profile_memory=True``), in time order; memory outside that allocator (BLAS
  work buffers, the Python heap) is not seen, nor are frees of tensors made before the call.
* :func:`time_call`: wall-clock seconds of each call after warm-up calls, synchronising CUDA; every
  time in ``seg``'s tables (profiler, model, op and attention benchmarks) is one of its numbers.
* :func:`si`, :func:`mib`, :func:`duration`, :func:`size`: how the tables print them.
* :func:`environment`: the machine they were taken on (CPU model and flags, CPUs, threads, torch,
  device and GPU), one dict for every report; :func:`describe_environment` prints it.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

os.environ.setdefault('KINETO_LOG_LEVEL', '6')  # silence the profiler's per-session log lines

__all__ = ['CPU_FLAGS', 'FUSED_ATTENTION_KERNELS', 'MEMORY_METHODS', 'count_flops', 'count_parameters', 'cpu_flags',
           'cpu_model', 'describe_environment', 'duration', 'environment', 'mib', 'peak_memory', 'present_bytes', 'si',
           'size', 'sync', 'time_call']

T = TypeVar('T')

MEMORY_METHODS = {
    'cuda': 'torch.cuda.max_memory_allocated above the memory allocated before',
    'cpu': "the peak of PyTorch's CPU allocator events recorded by torch.profiler",
}


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameter elements of ``module`` (0 for ``None``), shared parameters counted once."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters())


def present_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views of one storage count once; non-tensors
    are skipped): what a pass finds already allocated (weights, buffers, optimizer state, the batch)."""
    storages = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _cpu_flash_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                   out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_sdpa_backward_flops,
}

FUSED_ATTENTION_KERNELS = (
    'aten._scaled_dot_product_flash_attention', 'aten._scaled_dot_product_efficient_attention',
    'aten._scaled_dot_product_cudnn_attention', 'aten._scaled_dot_product_flash_attention_for_cpu',
    '(and their backward kernels)')
"""The fused attention kernels :func:`count_flops` counts."""


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (2 per multiply-add), fused attention kernels included."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def _walk(nodes: list) -> Iterator:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _cpu_allocation_peak(prof: profile) -> int:
    tree = prof.profiler.kineto_results.experimental_event_tree()
    events = [n for n in _walk(tree) if type(n.extra_fields).__name__ == '_ExtraFields_Allocation'
              and n.extra_fields.device.type == 'cpu']
    events.sort(key=lambda n: (n.start_time_ns, n.extra_fields.id))
    live = peak = 0
    for node in events:
        live += node.extra_fields.alloc_size  # negative for a free
        peak = max(peak, live)
    return peak


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPU."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_memory(fn: Callable[[], T], device: str | torch.device = 'cpu',
                present: Iterable[Any] = ()) -> tuple[T, int]:
    """Run ``fn()`` and measure the peak tensor memory it allocated on ``device``.

    Args:
        fn: the call.
        device: where it allocates.
        present: tensors alive before the call (weights, buffers, optimizer state, the batch); the
            bytes of their storages (:func:`present_bytes`, taken before the call) are added to the
            peak, which is then what a pass needs in all, measured alike on CPU and CUDA.

    Returns:
        ``(fn(), peak_bytes)``: the result and the most bytes of tensors allocated by the call that
        were alive at the same time (see the module docstring for the method on each device), plus
        those of ``present``.

    Raises:
        ValueError: for a device type other than ``'cpu'`` and ``'cuda'``.
    """
    device = torch.device(device)
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f"peak_memory supports devices 'cpu' and 'cuda', got {str(device)!r}")
    base = present_bytes(present)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        allocated = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, base + torch.cuda.max_memory_allocated(device) - allocated
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    return result, base + _cpu_allocation_peak(prof)


def time_call(fn: Callable[[], Any], device: str | torch.device = 'cpu', warmup: int = 3,
              repeat: int = 10) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised).

    Raises:
        ValueError: ``warmup`` < 0 or ``repeat`` < 1.
    """
    if warmup < 0 or repeat < 1:
        raise ValueError(f'need warmup >= 0 and repeat >= 1, got warmup={warmup}, repeat={repeat}')
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def si(value: float | None, unit: str = '') -> str:
    """``value`` with an SI prefix, 2 decimals: ``813.16 K``, ``4.89 G``; blank for None."""
    if value is None:
        return ''
    for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(value) >= factor:
            return f'{value / factor:.2f} {prefix}{unit}'
    return f'{value:g}{(" " + unit) if unit else ""}'


def mib(n_bytes: int | None) -> str:
    """Bytes as MiB with one decimal; blank for None."""
    return '' if n_bytes is None else f'{n_bytes / 2 ** 20:.1f}'


def duration(seconds: float | None) -> str:
    """``12.3 ms`` below a second, ``1.23 s`` above; ``-`` for None."""
    if seconds is None:
        return '-'
    return f'{seconds * 1e3:.1f} ms' if seconds < 1 else f'{seconds:.2f} s'


def size(n_bytes: int | None) -> str:
    """``123.4 MiB`` below a GiB, ``1.23 GiB`` above; ``-`` for None."""
    if n_bytes is None:
        return '-'
    return f'{n_bytes / 2 ** 30:.2f} GiB' if n_bytes >= 2 ** 30 else f'{n_bytes / 2 ** 20:.1f} MiB'


CPU_FLAGS = ('avx2', 'avx512_bf16', 'amx')
"""The CPU features that decide which kernels run (AVX2; native bfloat16: AVX512-BF16, AMX) and that
:func:`environment` reports; ``amx`` stands for any ``amx_*`` flag."""


def _cpuinfo() -> tuple[str | None, set[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; (None, empty) where there is none."""
    model, flags = None, set()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                key = line.split(':', 1)[0].strip().lower()
                if key == 'model name' and model is None:
                    model = line.split(':', 1)[1].strip()
                elif key == 'flags' and not flags:
                    flags = set(line.split(':', 1)[1].split())
                if model is not None and flags:
                    break
    except OSError:
        pass
    return model, flags


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo), or the platform's."""
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Those of :data:`CPU_FLAGS` the CPU has, in that order (empty where /proc/cpuinfo is absent)."""
    flags = _cpuinfo()[1]
    has = {'avx2': 'avx2' in flags, 'avx512_bf16': 'avx512_bf16' in flags,
           'amx': any(f.startswith('amx') for f in flags)}
    return [name for name in CPU_FLAGS if has[name]]


def environment(device: str | torch.device = 'cpu') -> dict[str, Any]:
    """Where numbers were taken: the one description of the machine in ``seg`` (the comparison report,
    the model, op and attention benchmarks).

    Returns:
        A JSON-able dict with

        - ``torch``, ``python``: versions;
        - ``cpu``: the CPU model; ``cpu_flags``: those of :data:`CPU_FLAGS` it has;
        - ``cpu_count``: logical CPUs (``os.cpu_count()``); ``threads``: torch's intra-op threads;
        - ``device``: ``device`` as given; ``gpu``: its name, only when ``device`` is CUDA;
        - ``load_average``: the 1, 5 and 15 minute load averages, only where the OS has them.

        :func:`describe_environment` prints it.
    """
    device = torch.device(device)
    env = dict(torch=torch.__version__, python=platform.python_version(), cpu=cpu_model(), cpu_flags=cpu_flags(),
               cpu_count=os.cpu_count(), threads=torch.get_num_threads(), device=str(device))
    if device.type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
    try:
        env['load_average'] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on Windows
        pass
    return env


def describe_environment(env: dict[str, Any]) -> str:
    """One line of an :func:`environment` dict, e.g. ``AMD EPYC (avx2, avx512_bf16), 2 CPUs, torch 2.5.1
    (2 threads), python 3.11.7, device cuda: NVIDIA H100, load 0.52``; missing keys are left out, other
    keys added as ``key value``."""
    parts = []
    if env.get('cpu'):
        flags = env.get('cpu_flags')
        parts.append(env['cpu'] + (f" ({', '.join(flags) if flags else 'none of ' + '/'.join(CPU_FLAGS)})"
                                   if flags is not None else ''))
    if env.get('cpu_count') is not None:
        parts.append(f"{env['cpu_count']} CPUs")
    if env.get('torch'):
        parts.append(f"torch {env['torch']}" + (f" ({env['threads']} threads)" if env.get('threads') else ''))
    if env.get('python'):
        parts.append(f"python {env['python']}")
    if env.get('device'):
        parts.append(f"device {env['device']}" + (f": {env['gpu']}" if env.get('gpu') else ''))
    if env.get('load_average'):
        parts.append(f"load {env['load_average'][0]}")
    parts += [f'{k} {v}' for k, v in env.items() if k not in _DESCRIBED]
    return ', '.join(parts)


_DESCRIBED = ('cpu', 'cpu_flags', 'cpu_count', 'torch', 'threads', 'python', 'device', 'gpu', 'load_average')
