"""Peak tensor memory of a call, on CPU and CUDA, for the ops' tests and benchmark.

CUDA has ``torch.cuda.max_memory_allocated``; the CPU allocator keeps no such counter.  On
CPU the call runs under ``torch.profiler.profile(profile_memory=True)``, which records every
allocation and free made through PyTorch's CPU allocator with its size; the running sum of
those sizes, in time order, peaks at the most tensor memory the call held at once.
Allocations outside PyTorch's allocator (BLAS work buffers, the Python heap) are not seen,
and neither are frees of tensors allocated before the call (so nothing is credited for
them): the figure is the peak of tensor bytes allocated by the call and still alive, the
CPU counterpart of ``max_memory_allocated() - memory_allocated()`` on CUDA.
"""
from __future__ import annotations

from typing import Callable, Iterator, Tuple, TypeVar, Union

import torch
from torch.profiler import ProfilerActivity, profile

T = TypeVar('T')


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


def peak_memory(fn: Callable[[], T], device: Union[str, torch.device] = 'cpu') -> Tuple[T, int]:
    """Run ``fn()`` and measure the peak tensor memory it allocated on ``device``.

    Args:
        fn: the call to measure; its result is returned.
        device: ``'cpu'`` (torch profiler allocation events) or a CUDA device
            (``torch.cuda.max_memory_allocated`` relative to the memory allocated before).

    Returns:
        ``(fn(), peak_bytes)``: the result and the most bytes of tensors allocated by the
        call that were alive at the same time.

    Raises:
        ValueError: for a device type other than ``'cpu'`` and ``'cuda'``.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - base
    if device.type != 'cpu':
        raise ValueError(f"peak_memory supports devices 'cpu' and 'cuda', got {str(device)!r}")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    return result, _cpu_allocation_peak(prof)
