"""Cost of a segmentor: parameters, FLOPs, latency and peak memory of one forward (and backward) pass.

No paper. Every number comes from :mod:`seg.analysis.measure` (FLOPs with the fused attention
kernels, peak memory on CPU and CUDA, latency with warm-up and synchronisation); the weights and
the input present before a pass are added to its peak, so CPU and CUDA peaks mean the same thing.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import statistics
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from seg.engine.precision import Precision, channels_last_model, fast_model

from .measure import MEMORY_METHODS, count_flops, count_parameters, peak_memory, time_call

__all__ = ['CostReport', 'measure_pass', 'profile_segmentor', 'random_samples']


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


def _step(model: nn.Module, inputs: Tensor, samples: list[dict], train: bool,
          autocast: torch.dtype | None = None) -> None:
    """One forward (eval, no grad) or one forward + backward (train mode, the model's own losses).

    ``autocast``: run the training forward (not the backward, as PyTorch recommends and as the
    optimizer wrapper does) under autocast to that dtype.
    """
    if train:
        context = torch.autocast(inputs.device.type, dtype=autocast) if autocast is not None \
            else contextlib.nullcontext()
        with context:
            losses = model.loss(inputs, samples)
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        total.backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(inputs)


def measure_pass(model: nn.Module, inputs: Tensor, samples: list[dict], train: bool, warmup: int = 3,
                 repeat: int = 10, autocast: torch.dtype | None = None) -> tuple[float, int]:
    """Median latency and peak memory of one pass of a segmentor.

    Args:
        model: an ``EncoderDecoder`` (anything with ``forward(inputs)`` and ``loss(inputs, samples)``).
        inputs: normalised input batch [B, 3, H, W] on the model's device.
        samples: data samples with ``gt_sem_seg`` (used by the training pass only).
        train: False: forward in eval mode under ``no_grad``; True: forward + backward of the summed
            losses in train mode (the gradients are dropped after each step).
        warmup: untimed passes first.
        repeat: timed passes; the median is reported.
        autocast: the training forward under autocast to this dtype (None: as the model is).

    Returns:
        ``(median milliseconds, peak bytes)``: the peak of one extra pass (see
        :func:`seg.analysis.measure.peak_memory`) plus the weights, buffers and input it found present.

    Raises:
        ValueError: if ``repeat`` < 1 or ``warmup`` < 0.
    """
    device = inputs.device
    model.train(train)
    model.zero_grad(set_to_none=True)

    def one_pass() -> None:
        _step(model, inputs, samples, train, autocast)

    times = time_call(one_pass, device, warmup, repeat)
    gc.collect()
    _, peak = peak_memory(one_pass, device,
                          present=[*model.parameters(), *model.buffers(), inputs, *(s['gt_sem_seg'] for s in samples)])
    model.eval()
    return statistics.median(times) * 1000.0, peak


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
                      batch: int = 1, warmup: int = 3, repeat: int = 10,
                      precision: Precision | None = None) -> CostReport:
    """Parameters, FLOPs, latency and peak memory of an ``EncoderDecoder``.

    Args:
        model: the segmentor (moved to ``device``).
        size: input (H, W).
        device: where to time it.
        batch: batch size of the timed passes (FLOPs are always for batch 1).
        warmup: untimed passes before timing.
        repeat: timed passes (0: count parameters and FLOPs only).
        precision: how the passes are timed. The eval forward is that of a copy of ``model`` made fast
            for inference at this precision (:func:`seg.engine.precision.fast_model`: BatchNorm folded,
            weights cast, channels-last), as evaluation and inference run it; the training step runs
            under autocast to ``precision.dtype`` (none for fp32), model and input channels-last if it
            says so. None: both in fp32 on ``model`` as it is, contiguous. Parameters and FLOPs are
            always those of ``model`` in fp32.

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
        if precision is not None and precision.channels_last:
            model = channels_last_model(model)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        fwd = model if precision is None else fast_model(copy.deepcopy(model), precision)
        report.forward_ms, report.forward_peak = measure_pass(fwd, inputs, samples, False, warmup, repeat)
        dtype = precision.dtype if precision is not None else None
        try:
            report.train_ms, report.train_peak = measure_pass(model, inputs, samples, True, warmup, repeat, dtype)
        except ValueError as exc:  # e.g. a BatchNorm over pooled vectors (SK) cannot train on batch 1
            model.zero_grad(set_to_none=True)
            model.eval()
            report.notes.append(f'fwd+bwd not measured at batch {batch}: {exc}')
    return report
