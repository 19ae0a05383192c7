"""Model-level benchmark: passes per second of a segmentor, the way mmsegmentation's benchmark times them.

A *pass* is one batch through the model: in ``eval`` mode a whole-image ``predict`` (logits resized
to the input, argmax) without gradients; in ``train`` mode one ``train_step`` -- preprocessing,
forward, the training losses, backward and the optimizer step. Each *repeat* runs ``warmup``
untimed passes then ``iters`` timed ones (mmsegmentation's benchmark: 5 warm-up, 200 timed images,
repeated); the result keeps every pass time, so it reports images per second per repeat (mean ± std
over the repeats, as mmsegmentation does) and the median seconds per pass over all of them.

Every time is :func:`seg.analysis.measure.time_call`'s. Peak memory is
:func:`seg.analysis.measure.peak_memory` of one more pass plus the tensors present before it (weights,
buffers, optimizer state, the batch), alike on both devices: on CUDA ``torch.cuda.max_memory_allocated``
above what was allocated before the pass; on CPU the peak of PyTorch's allocator events.

The accuracy guard compares the label maps of a fast path with fp32 ones on the same images: pixel
agreement of the argmax and, where labels exist, the mIoU of both (:func:`agreement`).
"""
from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seg.evaluation.metrics import confusion_matrix, metrics_from_confusion

from .measure import describe_environment, duration, environment, peak_memory, size, time_call

__all__ = ['GUARD_AGREEMENT', 'GUARD_MIOU_POINTS', 'Agreement', 'PassTiming', 'agreement', 'format_agreement',
           'format_timing', 'time_passes']

GUARD_AGREEMENT = 0.999
"""A fast default must agree with fp32 on at least this fraction of pixels ..."""
GUARD_MIOU_POINTS = 0.1
"""... and change the mIoU by at most this many points (mIoU in percent)."""


@dataclass
class PassTiming:
    """What :func:`time_passes` measured.

    Attributes:
        times: seconds of each timed pass, one list per repeat.
        images_per_pass: the batch size.
        first_pass_s: seconds of the very first pass (with ``torch.compile``: the compilation), kept
            out of ``times``.
        peak_bytes: peak memory of one pass, with the tensors present before it.
        env: where it ran (:func:`seg.analysis.measure.environment`).
        notes: how it was set up (precision, memory format, ...), printed with the table.
    """

    times: list[list[float]]
    images_per_pass: int
    first_pass_s: float
    peak_bytes: int
    env: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> list[float]:
        """Images per second of each repeat."""
        return [self.images_per_pass * len(t) / sum(t) for t in self.times]

    @property
    def median_s(self) -> float:
        """Median seconds per pass over every timed pass."""
        return statistics.median(t for rep in self.times for t in rep)


def time_passes(step: Callable[[], Any], device: str | torch.device, warmup: int, iters: int, repeat: int,
                images_per_pass: int, present: Callable[[], Iterable[torch.Tensor]] = tuple) -> PassTiming:
    """Time ``step`` (one pass) ``repeat`` times over ``iters`` passes after ``warmup`` untimed ones.

    Args:
        step: runs one pass.
        device: where it runs (CUDA is synchronised around each pass).
        warmup / iters / repeat: untimed passes per repeat, timed passes per repeat, repeats.
        images_per_pass: the batch size.
        present: the tensors alive before a pass (weights, optimizer state, batch), added to its peak.

    Raises:
        ValueError: ``iters`` or ``repeat`` below 1, or ``warmup`` below 0.
    """
    if iters < 1 or repeat < 1 or warmup < 0:
        raise ValueError(f'need iters >= 1, repeat >= 1 and warmup >= 0, got iters={iters}, repeat={repeat}, '
                         f'warmup={warmup}')
    first = time_call(step, device, warmup=0, repeat=1)[0]
    times = [time_call(step, device, warmup, iters) for _ in range(repeat)]
    gc.collect()
    _, peak = peak_memory(step, device, present=present())
    return PassTiming(times=times, images_per_pass=images_per_pass, first_pass_s=first, peak_bytes=peak, env=environment(device))


def format_timing(timing: PassTiming, title: str) -> str:
    """The per-repeat table, the summary, and last ``median_s=<seconds per pass>``."""
    lines = [f'## {title}', '', *([describe_environment(timing.env)] if timing.env else []), *timing.notes, '',
             '| repeat | passes | images/s | median s/pass |', '|---|---|---|---|']
    for k, (rep, fps) in enumerate(zip(timing.times, timing.fps), 1):
        lines.append(f'| {k} | {len(rep)} | {fps:.3f} | {statistics.median(rep):.4f} |')
    fps = timing.fps
    spread = statistics.stdev(fps) if len(fps) > 1 else 0.0
    lines += ['', f'fps: {statistics.fmean(fps):.3f} ± {spread:.3f} (mean ± std over {len(fps)} repeats, '
                  f'{timing.images_per_pass} image(s) per pass)',
              f'first pass: {duration(timing.first_pass_s)} (not timed; with --compile: the compilation)',
              f'peak memory: {size(timing.peak_bytes)}',
              f'median_s={timing.median_s:.6f}']
    return '\n'.join(lines)


@dataclass
class Agreement:
    """Label maps of a fast path against fp32 ones on the same images.

    Attributes:
        pixels: pixels compared.
        agree: fraction of them with the same label.
        miou_ref / miou_fast: mIoU in percent of the fp32 and the fast labels against ground truth
            (None without ground truth).
        source: where the images came from.
    """

    pixels: int
    agree: float
    miou_ref: float | None
    miou_fast: float | None
    source: str

    @property
    def miou_change(self) -> float | None:
        return None if self.miou_ref is None else self.miou_fast - self.miou_ref

    @property
    def passes(self) -> bool:
        """At least :data:`GUARD_AGREEMENT` agreement and at most :data:`GUARD_MIOU_POINTS` mIoU change."""
        change = self.miou_change
        return self.agree >= GUARD_AGREEMENT and (change is None or abs(change) <= GUARD_MIOU_POINTS)


def _miou(preds: list[np.ndarray], gts: list[np.ndarray], num_classes: int, ignore_index: int) -> float:
    cm = sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), num_classes, ignore_index)
             for p, g in zip(preds, gts))
    return metrics_from_confusion(cm)['mIoU'] * 100


def agreement(ref: list[np.ndarray], fast: list[np.ndarray], gts: list[np.ndarray] | None = None,
              num_classes: int = 0, ignore_index: int = 255, source: str = '') -> Agreement:
    """Pixel agreement of two lists of label maps, and their mIoU against ``gts`` when given.

    Raises:
        ValueError: lists of different lengths or maps of different shapes.
    """
    if len(ref) != len(fast) or any(a.shape != b.shape for a, b in zip(ref, fast)):
        raise ValueError('agreement needs label maps of equal count and shapes')
    pixels = sum(a.size for a in ref)
    same = sum(int((a == b).sum()) for a, b in zip(ref, fast))
    miou_ref = miou_fast = None
    if gts is not None:
        miou_ref = _miou(ref, gts, num_classes, ignore_index)
        miou_fast = _miou(fast, gts, num_classes, ignore_index)
    return Agreement(pixels, same / max(pixels, 1), miou_ref, miou_fast, source)


def format_agreement(result: Agreement, fast: str) -> str:
    """One paragraph: agreement, mIoU change, and whether ``fast`` passes the guard."""
    lines = [f'accuracy guard ({result.source}): {fast} vs fp32 agree on {result.agree * 100:.3f}% of '
             f'{result.pixels} pixels']
    if result.miou_ref is not None:
        lines.append(f'mIoU fp32 {result.miou_ref:.2f}, fast {result.miou_fast:.2f}, change {result.miou_change:+.3f} '
                     f'points')
    verdict = 'passes' if result.passes else 'FAILS'
    lines.append(f'guard (>= {GUARD_AGREEMENT * 100:.1f}% agreement, |mIoU change| <= {GUARD_MIOU_POINTS}): '
                 f'{verdict}')
    return '\n'.join(lines)
