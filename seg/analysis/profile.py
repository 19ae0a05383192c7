"""Cost of a segmentor: parameters, FLOPs, latency and peak memory of one forward (and backward) pass.

No paper. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts the
matrix products (convolutions, ``mm`` / ``bmm`` / ``baddbmm``, einsums lowered to them, fused
attention; the CPU flash-attention kernel is added here, the counter only knows the CUDA ones) at
2 FLOPs per multiply-add and nothing else: norms, activations, softmax, pooling, bias additions
and interpolation count 0.

Peak memory:

* CUDA: ``torch.cuda.max_memory_allocated`` over the pass (it includes the weights and the input);
* CPU: PyTorch has no allocator statistics on CPU, so :class:`TensorMemoryTracker` (a
  ``TorchDispatchMode``) adds up the bytes of every tensor storage an operator creates, subtracts
  them when the storage is freed, and keeps the maximum; the weights, buffers and input present
  before the pass are added to it. Scratch memory an operator uses inside its kernel and frees
  before returning is not seen, so this is a lower bound of what the allocator holds.
"""
from __future__ import annotations

import functools
import statistics
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

__all__ = ['CostReport', 'TensorMemoryTracker', 'count_flops', 'count_parameters', 'measure_pass',
           'profile_segmentor', 'random_samples']

MEMORY_METHODS = {
    'cuda': 'torch.cuda.max_memory_allocated',
    'cpu': 'live tensor storages tracked by a TorchDispatchMode, plus weights and input',
}


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameter elements of ``module`` (0 for ``None``), shared parameters counted once."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters())


def _cpu_flash_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """The CPU flash-attention kernel's forward: same count as the CUDA kernels FlopCounterMode knows."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                   out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# FlopCounterMode has formulas for the CUDA attention kernels only; without these the CPU flash kernel
# (which position_attention's SDPA path runs on CPU) would count 0.
_EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_sdpa_backward_flops,
}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as ``FlopCounterMode`` counts them (2 per multiply-add), the CPU
    flash-attention kernel included."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


class TensorMemoryTracker(TorchDispatchMode):
    """Live and peak bytes of the tensor storages created by operators inside the ``with`` block.

    Storages registered with :meth:`ignore` (weights, inputs) are not counted. Every storage an
    operator returns is counted once when first seen and released when PyTorch frees it (a
    weak reference's callback), so ``peak`` is the largest sum of simultaneously live new
    storages. Works on any device; used for CPU, where PyTorch keeps no allocator statistics.

    Attributes:
        live: bytes currently alive.
        peak: the maximum of ``live`` since the block started.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, weakref.ref] = {}

    def ignore(self, *tensors: Tensor) -> None:
        """Mark the storages of ``tensors`` as already present (never counted)."""
        for t in tensors:
            if isinstance(t, Tensor):
                st = t.untyped_storage()
                self._refs[id(st)] = weakref.ref(st)

    def _release(self, key: int, nbytes: int, ref: weakref.ref) -> None:
        if self._refs.get(key) is ref:
            del self._refs[key]
        self.live -= nbytes

    def _track(self, t: Tensor) -> None:
        st = t.untyped_storage()
        key = id(st)
        known = self._refs.get(key)
        if known is not None and known() is st:
            return
        nbytes = st.nbytes()
        self._refs[key] = weakref.ref(st, functools.partial(self._release, key, nbytes))
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, Tensor) and not leaf.is_meta:
                self._track(leaf)
        return out


def random_samples(batch: int, size: tuple[int, int], num_classes: int, device: torch.device,
                   seed: int = 0) -> tuple[Tensor, list[dict]]:
    """A normalised random input batch and per-sample random labels for a training step.

    Returns:
        ``(inputs [B, 3, H, W], data_samples)`` where each sample holds ``gt_sem_seg`` [H, W].
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = torch.randn(batch, 3, h, w, generator=gen).to(device)  # [B, 3, H, W]
    labels = torch.randint(0, num_classes, (batch, h, w), generator=gen).to(device)  # [B, H, W]
    return inputs, [dict(gt_sem_seg=labels[i]) for i in range(batch)]


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _step(model: nn.Module, inputs: Tensor, samples: list[dict], train: bool) -> None:
    """One forward (eval, no grad) or one forward + backward (train mode, the model's own losses)."""
    if train:
        losses = model.loss(inputs, samples)
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        total.backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(inputs)


def measure_pass(model: nn.Module, inputs: Tensor, samples: list[dict], train: bool, warmup: int = 3,
                 repeat: int = 10) -> tuple[float, int]:
    """Median latency and peak memory of one pass of a segmentor.

    Args:
        model: an ``EncoderDecoder`` (anything with ``forward(inputs)`` and ``loss(inputs, samples)``).
        inputs: normalised input batch [B, 3, H, W] on the model's device.
        samples: data samples with ``gt_sem_seg`` (used by the training pass only).
        train: False: forward in eval mode under ``no_grad``; True: forward + backward of the summed
            losses in train mode (the gradients are dropped after each step).
        warmup: untimed passes first.
        repeat: timed passes; the median is reported.

    Returns:
        ``(median milliseconds, peak bytes)``; the peak is measured in one extra pass, apart from the
        timed ones (the CPU tracker slows a pass down). See the module docstring for the method.

    Raises:
        ValueError: if ``repeat`` < 1 or ``warmup`` < 0.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f'repeat must be >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}')
    device = inputs.device
    model.train(train)
    model.zero_grad(set_to_none=True)
    for _ in range(warmup):
        _step(model, inputs, samples, train)
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _step(model, inputs, samples, train)
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        _step(model, inputs, samples, train)
        _sync(device)
        peak = int(torch.cuda.max_memory_allocated(device))
    else:
        present = [*model.parameters(), *model.buffers(), inputs, *(s['gt_sem_seg'] for s in samples)]
        base = sum(t.untyped_storage().nbytes() for t in {id(t): t for t in present}.values())
        with TensorMemoryTracker() as tracker:
            tracker.ignore(*present)
            _step(model, inputs, samples, train)
        peak = base + tracker.peak
    model.eval()
    return statistics.median(times), peak


@dataclass
class CostReport:
    """What :func:`profile_segmentor` measured for one model.

    Attributes:
        params: parameters of the whole model (backbone, decode head and auxiliary head).
        head_params: parameters of the decode head alone.
        flops: FLOPs of one inference forward of a [1, 3, H, W] input (no auxiliary head).
        head_flops: FLOPs of the decode head alone within that forward.
        input_size: (H, W) of the input.
        forward_ms / train_ms: median latency of a forward / forward + backward pass (None when not
            timed).
        forward_peak / train_peak: peak bytes of those passes (None when not timed).
        batch: batch size of the timed passes.
        device: where it was timed.
        memory_method: how the peak was measured.
        notes: what could not be measured, and why.
    """

    params: int
    head_params: int
    flops: int
    head_flops: int
    input_size: tuple[int, int]
    forward_ms: float | None = None
    train_ms: float | None = None
    forward_peak: int | None = None
    train_peak: int | None = None
    batch: int = 1
    device: str = 'cpu'
    memory_method: str = ''
    notes: list[str] = field(default_factory=list)


def profile_segmentor(model: nn.Module, size: tuple[int, int], device: str | torch.device = 'cpu',
                      batch: int = 1, warmup: int = 3, repeat: int = 10) -> CostReport:
    """Parameters, FLOPs, latency and peak memory of an ``EncoderDecoder``.

    Args:
        model: the segmentor (moved to ``device``).
        size: input (H, W).
        device: where to time it.
        batch: batch size of the timed passes (FLOPs are always for batch 1).
        warmup: untimed passes before timing.
        repeat: timed passes (0: count parameters and FLOPs only).

    Returns:
        A :class:`CostReport`.

    Raises:
        ValueError: on a non-positive size or batch, or a negative ``repeat``.
    """
    h, w = size
    if h < 1 or w < 1 or batch < 1 or repeat < 0:
        raise ValueError(f'size must be positive, batch >= 1 and repeat >= 0, got size={size}, '
                         f'batch={batch}, repeat={repeat}')
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.zeros(1, 3, h, w, device=device)  # [1, 3, H, W]
    with torch.no_grad():
        flops = count_flops(lambda: model(x))
        feats = model.backbone(x)
        head_flops = count_flops(lambda: model.decode_head(feats))
    report = CostReport(params=count_parameters(model), head_params=count_parameters(model.decode_head),
                        flops=flops, head_flops=head_flops, input_size=(h, w), batch=batch,
                        device=str(device), memory_method=MEMORY_METHODS.get(device.type, MEMORY_METHODS['cpu']))
    if repeat:
        inputs, samples = random_samples(batch, (h, w), model.num_classes, device)
        report.forward_ms, report.forward_peak = measure_pass(model, inputs, samples, False, warmup, repeat)
        try:
            report.train_ms, report.train_peak = measure_pass(model, inputs, samples, True, warmup, repeat)
        except ValueError as exc:  # e.g. a BatchNorm over pooled vectors (SK) cannot train on batch 1
            model.zero_grad(set_to_none=True)
            model.eval()
            report.notes.append(f'fwd+bwd not measured at batch {batch}: {exc}')
    return report
