"""Numeric precision and memory format of a run, chosen by what the hardware runs fast.

``precision`` is one of :data:`PRECISIONS`: ``'fp32'``; ``'bf16'`` (autocast to bfloat16, no loss
scaling); ``'fp16'`` (autocast to float16 with a gradient scaler in training; CUDA only); ``'auto'``:
bf16 where the hardware has native bfloat16 arithmetic -- CPUs with AVX512-BF16 or AMX, NVIDIA GPUs
of compute capability 8.0 (Ampere) and newer -- and fp32 elsewhere, where emulated bf16 is slower
than fp32; ``'int8'`` (evaluation and inference only, CPU): the backbone's and decode head's
convolutions quantised to int8 after calibration on a few images, the attention modules in float32,
kept only where an accuracy guard passes (:mod:`seg.engine.quantize`). For evaluation and inference
(``inference=True``), ``'auto'`` on a CPU without native bf16 is ``'int8'`` rather than fp32; training
stays fp32 there. ``channels_last`` is ``'auto'`` (on whenever the precision is bf16 / fp16: oneDNN's
and cuDNN's low-precision convolutions run in NHWC; and for fp32 on the CPU, training and inference, where
oneDNN's NCHW convolutions copy their inputs and outputs to a blocked layout), ``True`` or ``False``.

Training runs the forward under autocast (:class:`seg.engine.optim_wrapper.AutoAmpOptimWrapper`);
evaluation and inference cast the BN-folded weights themselves (:func:`fast_model`),
which is faster than autocast and gives the same labels. Either way the attention ops keep their
softmax statistics in float32 (:mod:`seg.ops`), which keeps the bf16 heads within the tolerance the
tests check.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

__all__ = ['CHANNELS_LAST_CHOICES', 'PRECISIONS', 'Precision', 'amp_precision', 'channels_last_model', 'cpu_bf16_flags',
           'fast_model', 'flush_denormals', 'onednn_isa_cap', 'resolve_precision', 'use_amp_wrapper']

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16', 'int8')
CHANNELS_LAST_CHOICES = {'auto': 'auto', 'on': True, 'off': False}
"""The tools' ``--channels-last`` values and the ``channels_last`` each means to :func:`resolve_precision`."""
_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16, 'int8': None}


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's native-bfloat16 feature flags (``avx512_bf16``, ``amx_bf16``) from /proc/cpuinfo."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    return tuple(sorted(flags & {'avx512_bf16', 'amx_bf16'}))
    except OSError:
        pass
    return ()


# oneDNN's ISA names below AVX512_CORE_BF16, the first with bf16 dot products (oneDNN's docs, "CPU Dispatcher
# Control"); DNNL_MAX_CPU_ISA is the variable's older name.
_BELOW_BF16_ISAS = ('SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX2_VNNI_2', 'AVX512_CORE', 'AVX512_CORE_VNNI')


def onednn_isa_cap() -> str | None:
    """The value of ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) where it caps oneDNN below its bf16
    kernels (``AVX2``: how an AVX2-only CPU is emulated), else None: bf16 convolutions would then be emulated
    however the CPU's flags read, so ``auto`` treats the CPU as one without native bf16."""
    value = os.environ.get('ONEDNN_MAX_CPU_ISA') or os.environ.get('DNNL_MAX_CPU_ISA') or ''
    return value if value.strip().upper() in _BELOW_BF16_ISAS else None


@dataclass(frozen=True)
class Precision:
    """A resolved choice: ``name`` ('fp32', 'bf16', 'fp16', 'int8'), ``channels_last``, and why."""

    name: str
    channels_last: bool
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast / weight dtype (None for fp32 and int8)."""
        return _DTYPES[self.name]

    def describe(self) -> str:
        return f'precision {self.name}, {"channels-last" if self.channels_last else "contiguous (NCHW)"} ({self.reason})'


def resolve_precision(requested: str = 'auto', device: str | torch.device = 'cpu',
                      channels_last: bool | str = 'auto', inference: bool = False) -> Precision:
    """Turn a requested precision and memory format into the ones to run with on ``device``.

    ``inference``: for evaluation / inference, where ``'auto'`` on a CPU without native bf16 is
    ``'int8'`` (when this torch has a quantised CPU engine); training (False) keeps fp32 there.

    Raises:
        ValueError: an unknown precision, fp16 on a device without CUDA, int8 for training or on CUDA.
    """
    if requested not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {requested!r}')
    device = torch.device(device)
    if device.type == 'cpu':
        flush_denormals()
    if requested == 'auto':
        if device.type == 'cuda':
            major, _ = torch.cuda.get_device_capability(device)
            native = major >= 8
            why = f'auto: {torch.cuda.get_device_name(device)} is {"" if native else "not "}Ampere or newer'
        else:
            flags, cap = cpu_bf16_flags(), onednn_isa_cap()
            native = bool(flags) and cap is None
            why = (f'auto: this CPU has {", ".join(flags)}' if native else
                   f'auto: ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below its bf16 kernels' if flags else
                   'auto: this CPU has no native bf16')
        name = 'bf16' if native else 'fp32'
        if not native and device.type == 'cpu' and inference and _has_int8_engine():
            name = 'int8'
            why += ('; int8 (convolutions quantised, attention in fp32) for inference where its accuracy '
                    'guard passes, else fp32')
    else:
        name, why = requested, 'requested'
        if name == 'fp16' and device.type != 'cuda':
            raise ValueError('fp16 mixed precision needs a CUDA device; use bf16 (or auto) on CPU')
        if name == 'int8' and (device.type != 'cpu' or not inference):
            raise ValueError('int8 is for evaluation and inference on the CPU; training and CUDA use fp32, '
                             'bf16 or fp16')
    if channels_last == 'auto':
        # fp32 on the CPU too. Inference: oneDNN's NCHW convolutions copy every input and output to its blocked
        # layout, which at 1024x2048 is most of the peak memory; channels-last needs no copy. Training: the
        # same copies in forward and backward made the demo's fp32 step 1.4x slower and R-50-D8's 1.05-1.15x
        # on an Intel Xeon without bf16 (docs/benchmarks.md). int8 picks its own layout (NCHW).
        last = name in ('bf16', 'fp16') or (name == 'fp32' and device.type == 'cpu')
    elif isinstance(channels_last, bool):
        last = channels_last
    else:
        raise ValueError(f"channels_last must be 'auto', True or False, got {channels_last!r}")
    return Precision(name, last, why)


def flush_denormals() -> bool:
    """Flush subnormal floats to zero on this process's CPU threads (``torch.set_flush_denormal``), as every
    resolved CPU run does. x86 arithmetic on subnormals (below 1.2e-38 in float32) takes microcode assists,
    tens of times slower: DANet's channel attention keeps its softmax in float32 and the weights of far
    channels are about 1e-39, so the backward's matrix products ran at 1 GFLOP/s (its bf16 training step
    2.79 s with subnormals, 1.80 s without, on an AMX Xeon; docs/benchmarks.md). Values that small become 0.
    Returns whether the CPU supports it."""
    return torch.set_flush_denormal(True)


def _has_int8_engine() -> bool:
    from .quantize import int8_engine

    return int8_engine() is not None


def amp_precision(device: str | torch.device) -> str:
    """What ``--amp`` (mixed precision whatever the hardware) means on ``device``: bf16, or fp16 on
    CUDA GPUs without bf16."""
    cuda = torch.device(device).type == 'cuda'
    return 'fp16' if cuda and not torch.cuda.is_bf16_supported() else 'bf16'


def use_amp_wrapper(optim_wrapper: dict, precision: Precision) -> None:
    """Make an optim-wrapper config run the forward under ``precision``'s autocast (in place; fp32: no change)."""
    if precision.dtype is not None:
        optim_wrapper['type'] = 'AutoAmpOptimWrapper'
        optim_wrapper['dtype'] = str(precision.dtype).removeprefix('torch.')


def channels_last_model(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in NHWC memory format, its data preprocessor (if any) emitting NHWC batches."""
    model = model.to(memory_format=torch.channels_last)
    if hasattr(model, 'data_preprocessor'):
        model.data_preprocessor.channels_last = True
    return model


def fast_model(model: torch.nn.Module, precision: Precision, fold_bn: bool = True,
               compile: bool = False, calibration: list[torch.Tensor] | None = None,
               cache: bool = True, int8_min_agreement: float | None = None) -> torch.nn.Module:
    """``model`` (in eval mode) made fast for inference, in place, and returned.

    BatchNorm folded into the convolutions (in float32, before any cast); for bf16 / fp16 the
    network's weights cast to that dtype (``model.compute_dtype``: the input is cast after the data
    preprocessor, which stays float32; logits come back in float32), so no autocast is needed around
    it -- the attention ops keep their softmax statistics in float32 for low-precision inputs
    (:mod:`seg.ops`); the memory format of ``precision``; and ``torch.compile`` of backbone and heads
    when asked.

    int8 (:mod:`seg.engine.quantize`): BatchNorm always folded, then backbone and decode head quantised
    on ``calibration`` (preprocessed batches) where given, else on the first
    :data:`seg.engine.quantize.CALIBRATION_IMAGES` images the model sees (which run in fp32); a cached
    outcome applies at once. The accuracy guard keeps the model fp32 where int8 changes too many labels;
    ``model.int8_report`` says what happened, and the log says it too. ``int8_min_agreement`` overrides the
    guard's threshold on given ``calibration`` (``tools/benchmark.py`` times random weights with 0: their
    logits nearly tie, so any guard fails them).
    """
    from seg.models.fuse import fold_batchnorm

    model.eval()
    if fold_bn or precision.name == 'int8':
        fold_batchnorm(model)
    if precision.name == 'int8':
        _int8(model, calibration, cache, int8_min_agreement)
    if precision.dtype is not None:
        for part in (model.backbone, model.decode_head, model.auxiliary_head):
            if part is not None:
                part.to(precision.dtype)
        model.compute_dtype = precision.dtype
    # A failed int8 guard keeps fp32, which runs channels-last on the CPU (as precision 'fp32' does); a guard
    # decided later, on the first batches (lazy), switches the layout then (``_int8``'s ``on_fp32``).
    kept_fp32 = precision.name == 'int8' and model.int8_report is not None and not model.int8_report.active
    if precision.channels_last or kept_fp32:
        model = channels_last_model(model)
    if compile and precision.name == 'int8':
        from mmengine.logging import print_log

        print_log('int8: torch.compile is not applied to the int8 model', logger='current')
    elif compile:
        model.backbone = torch.compile(model.backbone)
        model.decode_head = torch.compile(model.decode_head)
    return model


def _int8(model: torch.nn.Module, calibration: list[torch.Tensor] | None, cache: bool,
          min_agreement: float | None = None) -> None:
    from mmengine.logging import print_log

    from .quantize import lazy_int8, quantize_segmentor

    def log(reason: str) -> None:
        print_log(f'int8: {reason}', logger='current')

    if next(model.parameters()).device.type != 'cpu':
        raise ValueError('int8 runs on the CPU only')
    if calibration:
        report = quantize_segmentor(model, list(calibration), cache, min_agreement)
        model.int8_report = report
        log(report.reason)
    else:
        model.int8_report = lazy_int8(model, cache=cache, log=log, on_fp32=channels_last_model)
