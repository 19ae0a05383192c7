"""int8 inference on CPUs without native bf16: post-training quantisation of a segmentor, guarded and cached.

What :func:`quantize_segmentor` does to an eval-mode segmentor (BatchNorm already folded):

* **Which parts.** The backbone and the decode head are each traced with FX graph mode quantisation
  (``torch.ao.quantization.quantize_fx``; PyTorch's PT2E flow now lives in torchao, which is not a
  dependency). Their convolutions (and ReLUs, additions, poolings) run in int8 through oneDNN
  (``torch.backends.quantized.engine = 'onednn'``), with per-channel int8 weights and 7-bit
  activations (``reduce_range``: no saturation on AVX2 CPUs without VNNI). Every attention module
  (:class:`seg.models.attention.base.AttentionModule`: the zoo, as head context and as backbone
  plug-in) is left untraced and runs in float32, its input dequantised and its output requantised.
  A part that does not trace stays float32, and the report says so.
* **Calibration.** A few preprocessed batches (the dataset's or the folder's first images) go
  through the observed model, which computes the float32 logits at the same time.
* **The guard decides.** The int8 model's labels are compared with those float32 labels on the same
  images: at least :data:`INT8_AGREEMENT` of the pixels must agree, else the model stays float32 and
  the report says why.
* **The cache.** The outcome is stored under :func:`cache_dir` (``$SEG_CACHE_DIR`` or
  ``~/.cache/seg``, folder ``int8``), keyed by the SHA-256 of the model's float32 weights, its
  architecture (the module tree's repr), the torch version, the quantised engine, the ISA caps in the
  environment and :data:`RECIPE`: the quantised state dicts (int8 weights, scales and zero points) of
  a passing model, or the failed guard. The file is read only with ``torch.load(weights_only=True)``
  (tensors and plain data; nothing in it is executed); the graphs are re-traced from the float32
  model and the stored tensors loaded into them, so a later run pays one trace and convert, not the
  calibration. A different checkpoint has different weights, hence another key.

:func:`seg.engine.precision.fast_model` calls it for ``precision='int8'``: with calibration inputs at
hand (evaluation, the benchmark), or else on the first batches the model sees (folder inference),
which run in float32 while they are collected.
"""
from __future__ import annotations

import copy
import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ['CALIBRATION_IMAGES', 'INT8_AGREEMENT', 'INT8_MIOU_POINTS', 'RECIPE', 'Int8Report', 'cache_dir', 'cache_key',
           'int8_engine', 'lazy_int8', 'quantize_part', 'quantize_segmentor']

INT8_AGREEMENT = 0.995
"""The int8 model must give the float32 model's label on at least this fraction of the guard's pixels."""
INT8_MIOU_POINTS = 0.3
"""... and, where labels exist (``tools/benchmark.py --check-accuracy``), change the mIoU by at most this."""
CALIBRATION_IMAGES = 4
"""Images calibrated on (and guarded) when the first batches of a run are used."""
RECIPE = 'fx-x86qconfig-histogram-v1'
"""Names the quantisation recipe in the cache key: change it when the recipe changes."""
PARTS = ('backbone', 'decode_head')
_ISA_ENV = ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA')
# A quantised cat of inputs with different scales requantises them (the guard measures the result);
# its warning at every call says nothing a user can act on.
warnings.filterwarnings('ignore', message='All inputs of this cat operator must share the same quantization')


def int8_engine() -> str | None:
    """The quantised engine used: oneDNN where this torch has it (it honours ``ONEDNN_MAX_CPU_ISA``)."""
    engines = torch.backends.quantized.supported_engines
    return next((e for e in ('onednn', 'x86', 'fbgemm') if e in engines), None)


def cache_dir() -> Path:
    """Where calibrated models are kept: ``$SEG_CACHE_DIR/int8``, else ``~/.cache/seg/int8``."""
    root = os.environ.get('SEG_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'seg')
    return Path(root) / 'int8'


@dataclass
class Int8Report:
    """What :func:`quantize_segmentor` did.

    Attributes:
        quantized: the parts running in int8 (empty: the model stayed float32).
        kept_fp32: parts left in float32, with why (a part that does not trace).
        agreement: the guard's pixel agreement with float32 (None when no guard ran).
        pixels / images: what the guard compared.
        seconds: what it cost (calibration, convert and guard; or loading the cache).
        from_cache: the outcome came from the cache.
        path: the cache file.
        reason: one sentence for the log.
    """

    quantized: list[str] = field(default_factory=list)
    kept_fp32: dict[str, str] = field(default_factory=dict)
    agreement: float | None = None
    pixels: int = 0
    images: int = 0
    seconds: float = 0.0
    from_cache: bool = False
    path: str | None = None
    reason: str = ''

    @property
    def active(self) -> bool:
        return bool(self.quantized)


def _attention_classes(module: nn.Module) -> list[type]:
    from seg.models.attention.base import AttentionModule

    return sorted({type(m) for m in module.modules() if isinstance(m, AttentionModule)}, key=lambda c: c.__qualname__)


def _qconfig_mapping(module: nn.Module):
    from torch.ao.quantization import get_default_qconfig_mapping

    # x86's qconfig: 7-bit activations (reduce_range), per-channel weights -- safe on AVX2 without VNNI.
    mapping = get_default_qconfig_mapping('x86')
    for cls in _attention_classes(module):
        mapping = mapping.set_object_type(cls, None)
    return mapping


def quantize_part(module: nn.Module, example_inputs: tuple) -> nn.Module:
    """``module`` (eval mode) traced and observed for int8 (a copy): run calibration data through it, then
    ``torch.ao.quantization.quantize_fx.convert_fx`` it. Attention modules are left untraced, in float32.

    Raises:
        Exception: whatever FX tracing raises for a module it cannot trace.
    """
    from torch.ao.quantization.quantize_fx import prepare_fx

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return prepare_fx(copy.deepcopy(module).eval(), _qconfig_mapping(module), example_inputs,
                          prepare_custom_config={'non_traceable_module_class': _attention_classes(module)})


def _convert(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return convert_fx(prepared)


def cache_key(model: nn.Module, engine: str) -> str:
    """SHA-256 of the model's float32 weights and architecture, the torch version, engine, ISA caps and recipe."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(repr(model).encode())
    isa = ','.join(f'{k}={os.environ.get(k, "")}' for k in _ISA_ENV)
    h.update(f'{torch.__version__}|{engine}|{isa}|{RECIPE}|{",".join(PARTS)}'.encode())
    return h.hexdigest()


def _example(model: nn.Module, x: Tensor) -> dict[str, tuple]:
    small = x[:1, :, :min(64, x.shape[2]), :min(64, x.shape[3])]
    return {'backbone': (small,), 'decode_head': (model.backbone(small),)}


def _labels(model: nn.Module, x: Tensor) -> Tensor:
    return model.inference(x).argmax(1)


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f'.tmp{os.getpid()}')
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _from_cache(model: nn.Module, path: Path, x: Tensor, report: Int8Report) -> bool:
    """Apply the cached outcome; False when the file is unusable (then it is recalibrated)."""
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged or foreign file is recalibrated, never trusted
        return False
    if not isinstance(payload, dict) or payload.get('recipe') != RECIPE:
        return False
    report.from_cache, report.agreement = True, payload.get('agreement')
    report.pixels, report.images = int(payload.get('pixels', 0)), int(payload.get('images', 0))
    report.kept_fp32 = dict(payload.get('kept_fp32', {}))
    if not payload.get('passes'):
        report.reason = (f'stays fp32: the cached int8 guard failed ({_pct(report.agreement)} pixel agreement '
                         f'with fp32 on {report.images} images, need {INT8_AGREEMENT:.1%})')
        return True
    examples = _example(model, x)
    built = {}
    try:
        for part, state in payload['state'].items():
            prepared = quantize_part(getattr(model, part), examples[part])
            quantized = _convert(prepared)
            quantized.load_state_dict(state)
            built[part] = quantized
    except Exception:  # noqa: BLE001 - a stale layout: recalibrate
        return False
    for part, quantized in built.items():
        setattr(model, part, quantized)
    report.quantized = list(built)
    return True


def _cached_reason(report: Int8Report) -> None:
    if report.active:
        report.reason = (f'int8 ({", ".join(report.quantized)}; attention in fp32) from the cache '
                         f'({report.seconds:.1f} s to load; guard {_pct(report.agreement)} pixel agreement '
                         f'with fp32 on {report.images} images)')


def _pct(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.3%}'


@torch.no_grad()
def quantize_segmentor(model: nn.Module, inputs: list[Tensor], cache: bool = True,
                       min_agreement: float | None = None) -> Int8Report:
    """Quantise ``model``'s backbone and decode head to int8 in place, if the guard allows; see the module doc.

    Args:
        model: an eval-mode :class:`seg.models.segmentor.EncoderDecoder` on the CPU, BatchNorm folded.
        inputs: calibration (and guard) batches, preprocessed as the model's data preprocessor emits them.
        cache: read and write :func:`cache_dir`.
        min_agreement: the guard's pixel agreement (default :data:`INT8_AGREEMENT`).

    Returns:
        The report; ``model`` is changed only when it says ``active``.
    """
    start = time.perf_counter()
    min_agreement = INT8_AGREEMENT if min_agreement is None else min_agreement
    engine = int8_engine()
    report = Int8Report()
    if engine is None:
        report.reason = 'stays fp32: this torch has no quantised CPU engine'
        return report
    torch.backends.quantized.engine = engine
    path = cache_dir() / f'{cache_key(model, engine)}.pt' if cache else None
    report.path = str(path) if path else None
    if path is not None and path.is_file() and _from_cache(model, path, inputs[0], report):
        report.seconds = time.perf_counter() - start
        _cached_reason(report)
        return report
    originals = {part: getattr(model, part) for part in PARTS}
    examples = _example(model, inputs[0])
    prepared = {}
    for part in PARTS:
        try:
            prepared[part] = quantize_part(originals[part], examples[part])
        except Exception as exc:  # noqa: BLE001 - FX cannot trace every head: that part stays fp32
            report.kept_fp32[part] = f'{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ""}'
    if not prepared:
        report.reason = 'stays fp32: no part of the model traces for int8 (' + '; '.join(
            f'{k}: {v}' for k, v in report.kept_fp32.items()) + ')'
        report.seconds = time.perf_counter() - start
        return report
    try:
        for part, module in prepared.items():  # the observed model computes the float32 labels
            setattr(model, part, module)
        refs = [_labels(model, x) for x in inputs]
        for part, module in prepared.items():
            setattr(model, part, _convert(module))
        fasts = [_labels(model, x) for x in inputs]
    except Exception as exc:  # noqa: BLE001 - an op without an int8 kernel here: stay fp32
        for part, module in originals.items():
            setattr(model, part, module)
        report.reason = f'stays fp32: the int8 model failed to run ({type(exc).__name__}: {str(exc)[:160]})'
        report.seconds = time.perf_counter() - start
        return report
    report.pixels = sum(r.numel() for r in refs)
    report.images = sum(len(x) for x in inputs)
    report.agreement = sum(int((a == b).sum()) for a, b in zip(refs, fasts)) / max(report.pixels, 1)
    passes = report.agreement >= min_agreement
    if passes:
        report.quantized = list(prepared)
    else:
        for part, module in originals.items():
            setattr(model, part, module)
    report.seconds = time.perf_counter() - start
    if path is not None:
        state = {part: getattr(model, part).state_dict() for part in report.quantized}
        _save(path, dict(recipe=RECIPE, passes=passes, agreement=report.agreement, pixels=report.pixels,
                         images=report.images, kept_fp32=report.kept_fp32, seconds=report.seconds, state=state))
    kept = ''.join(f'; {k} stays fp32 ({v})' for k, v in report.kept_fp32.items())
    if passes:
        report.reason = (f'int8 ({", ".join(report.quantized)}; attention in fp32{kept}): guard '
                         f'{_pct(report.agreement)} pixel agreement with fp32 on {report.images} images '
                         f'(need {min_agreement:.1%}); calibration {report.seconds:.1f} s'
                         + (', cached' if path else ''))
    else:
        report.reason = (f'stays fp32: int8 failed the guard ({_pct(report.agreement)} pixel agreement with fp32 '
                         f'on {report.images} images, need {min_agreement:.1%})')
    return report


class _LazyInt8:
    """A forward pre-hook on the backbone: collects the first inputs (which run in float32), then
    quantises the segmentor on them; removes itself once done. Where the model stays fp32, ``on_fp32``
    receives it (the caller's fp32 layout) and the current batch continues in that layout."""

    def __init__(self, model: nn.Module, images: int, cache: bool, log, on_fp32=None) -> None:
        self.model, self.images, self.cache, self.log, self.on_fp32 = model, images, cache, log, on_fp32
        self.inputs: list[Tensor] = []
        self.handle = model.backbone.register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        self.inputs.append(x.detach().clone())
        if sum(len(t) for t in self.inputs) < self.images:
            return
        self.handle.remove()
        inputs, self.inputs = self.inputs, []
        with torch.inference_mode(False):
            report = quantize_segmentor(self.model, [t.clone() for t in inputs], self.cache)
        self.model.int8_report = report
        self.log(report.reason)
        if not report.active and self.on_fp32 is not None:
            self.on_fp32(self.model)
            if x.dim() == 4 and next(self.model.backbone.parameters()).is_contiguous(
                    memory_format=torch.channels_last):
                return (x.contiguous(memory_format=torch.channels_last), *args[1:])
        return None


def lazy_int8(model: nn.Module, images: int = CALIBRATION_IMAGES, cache: bool = True, log=print,
              on_fp32=None) -> Int8Report | None:
    """Make ``model`` int8 now if the cache has its outcome, else after its first ``images`` inputs (which
    run in float32); ``log`` receives the outcome. Returns the report when it was decided now. Where the
    model stays fp32 after calibrating on its first inputs, ``on_fp32(model)`` is called (the caller sets
    its fp32 layout; the batch at hand follows it)."""
    engine = int8_engine()
    if engine is not None and cache:
        path = cache_dir() / f'{cache_key(model, engine)}.pt'
        if path.is_file():
            torch.backends.quantized.engine = engine
            report = Int8Report(path=str(path))
            start = time.perf_counter()
            example = torch.zeros(1, 3, 64, 64)
            if _from_cache(model, path, example, report):
                report.seconds = time.perf_counter() - start
                _cached_reason(report)
                model.int8_report = report
                log(report.reason)
                return report
    _LazyInt8(model, images, cache, log, on_fp32)
    return None
