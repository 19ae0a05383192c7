"""``tools/benchmark.py``: a config's model timed in eval or train mode, with or without data and weights.

Without ``--ckpt`` the model is built from the config with random weights (no ImageNet download);
without data the input is random uint8 images of ``--shape``, and random labels in train mode. The
settings are those of the other tools: ``precision='fp32'`` is full precision, NCHW; ``'auto'`` the
default fast settings of :mod:`seg.engine.precision` (bf16 and channels-last where the hardware has
native bf16; in eval mode int8 elsewhere, see below, else fp32), ``'int8'`` asks for int8 (eval only),
``amp`` forces bf16 (fp16 on GPUs without bf16). In eval mode the model also
gets what ``tools/eval.py`` does by default: ``torch.inference_mode`` and BatchNorm folded into the
convolutions (exact). ``compile`` wraps backbone and heads in ``torch.compile``; the first pass, which
compiles, is reported on its own.

With ``check_accuracy=N`` the fast path's labels on N images are compared with fp32 ones
(:func:`seg.analysis.model_bench.agreement`): the config's validation images and labels when its
dataset is on disk, random images otherwise.

int8 (:mod:`seg.engine.quantize`) is calibrated on the first
:data:`~seg.engine.quantize.CALIBRATION_IMAGES` validation images when the dataset is on disk, else on
the timed random batch, and kept only where its own guard passes on them (random weights nearly tie
their logits and usually fail it: the timing is then fp32's, and the notes say so). ``precision='int8'``
asked for by name on random weights times int8 without that guard (threshold 0, nothing cached): a
speed measurement, with the guard measured on trained weights (``ckpt`` and ``check_accuracy``). Its accuracy guard
here is :data:`~seg.engine.quantize.INT8_AGREEMENT` agreement and at most
:data:`~seg.engine.quantize.INT8_MIOU_POINTS` mIoU points (the bf16 guard's are stricter).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from mmengine.config import Config

from seg.analysis.model_bench import (
    Agreement,
    PassTiming,
    agreement,
    format_agreement,
    format_timing,
    time_passes,
)
from seg.engine.config import load_config
from seg.engine.precision import (
    Precision,
    amp_precision,
    channels_last_model,
    resolve_precision,
    use_amp_wrapper,
)

from .inference import fast_model
from .model_io import build_model, model_from_checkpoint

__all__ = ['BenchmarkSettings', 'accuracy_guard', 'run_benchmark']


@dataclass
class BenchmarkSettings:
    """One benchmark run (the flags of ``tools/benchmark.py``).

    Attributes:
        config: config path.
        ckpt: checkpoint to load (random weights when None).
        device: 'cpu', 'cuda', or None (CUDA when available).
        mode: 'eval' (whole-image predict, no gradients) or 'train' (one optimizer step of the
            training losses).
        shape: (H, W) of the random input.
        batch_size: images per pass.
        precision: 'fp32' or 'auto' (also 'bf16' / 'fp16').
        amp: mixed precision whatever the hardware (overrides ``precision``).
        compile: ``torch.compile`` backbone and heads.
        channels_last: 'auto' (the precision's rule, :func:`seg.engine.precision.resolve_precision`), True or
            False: the memory format of the model and input, as ``tools/train.py --channels-last``.
        repeat / iters / warmup: repeats, timed passes per repeat, untimed passes per repeat
            (``iters`` / ``warmup`` default to mmsegmentation's 200 / 5 on CUDA, 10 / 2 on CPU).
        fold_bn: fold BatchNorm in eval mode.
        check_accuracy: images for the accuracy guard (0: off).
        cfg_options: config overrides.
    """

    config: str
    ckpt: str | None = None
    device: str | None = None
    mode: str = 'eval'
    shape: tuple[int, int] = (512, 1024)
    batch_size: int = 1
    precision: str = 'auto'
    amp: bool = False
    compile: bool = False
    channels_last: bool | str = 'auto'
    repeat: int = 3
    iters: int | None = None
    warmup: int | None = None
    fold_bn: bool = True
    check_accuracy: int = 0
    cfg_options: dict | None = None


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available here')
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f"--device must be 'cpu' or 'cuda', got {name!r}")
    return device


def _precision(settings: BenchmarkSettings, device: torch.device) -> Precision:
    return resolve_precision(amp_precision(device) if settings.amp else settings.precision, device,
                             channels_last=settings.channels_last, inference=settings.mode == 'eval')


def _calibration(model: torch.nn.Module, cfg: Config, fallback: dict) -> tuple[list[torch.Tensor], str]:
    """int8 calibration inputs: the first validation images when on disk, else the random batch."""
    from seg.engine.quantize import CALIBRATION_IMAGES

    found = _val_images(cfg, CALIBRATION_IMAGES)
    batches, source = found if found else ([fallback], 'the random batch')
    with torch.inference_mode():
        inputs = [model.data_preprocessor(b, False)['inputs'] for b in batches]
    return [x.clone() for x in inputs], source


def _model(settings: BenchmarkSettings, device: torch.device) -> tuple[torch.nn.Module, Config]:
    if settings.ckpt:
        model, cfg, _ = model_from_checkpoint(settings.ckpt, settings.config, settings.cfg_options, device)
        return model, cfg
    cfg = load_config(settings.config, settings.cfg_options)
    torch.manual_seed(0)
    return build_model(cfg).to(device), cfg


def _random_batch(batch: int, shape: tuple[int, int], num_classes: int, seed: int = 0) -> dict:
    """uint8 images and labels as a dataloader gives them to the data preprocessor."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(batch)]
    labels = [torch.randint(0, num_classes, (h, w), generator=g) for _ in range(batch)]
    return dict(inputs=images, data_samples=[dict(gt_sem_seg=lab, img_shape=(h, w), ori_shape=(h, w))
                                             for lab in labels])


def _optim_wrapper(model: torch.nn.Module, cfg: Config, precision: Precision):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    use_amp_wrapper(wrapper_cfg, precision)
    with DefaultScope.overwrite_default_scope('seg'):
        return build_optim_wrapper(model, wrapper_cfg)


def _eval_step(model: torch.nn.Module, data: dict, device: torch.device):
    """One whole-image pass of a model made by :func:`fast_model` (whose weights carry the precision)."""
    def step():
        batch = model.data_preprocessor(data, False)
        inputs = batch['inputs'].to(device, non_blocking=True)
        with torch.inference_mode():
            return model.predict(inputs, batch['data_samples'])
    return step


def run_benchmark(settings: BenchmarkSettings) -> tuple[PassTiming, Agreement | None, str]:
    """Time the passes of ``settings``; returns the timing, the accuracy guard (or None) and the report.

    Raises:
        ValueError: a bad mode, device, precision, shape or batch size.
    """
    if settings.mode not in ('eval', 'train'):
        raise ValueError(f"--mode must be 'eval' or 'train', got {settings.mode!r}")
    h, w = settings.shape
    if h < 1 or w < 1 or settings.batch_size < 1:
        raise ValueError(f'--shape and --batch-size must be positive, got {settings.shape} and {settings.batch_size}')
    device = _device(settings.device)
    precision = _precision(settings, device)
    cuda = device.type == 'cuda'
    iters = settings.iters or (200 if cuda else 10)
    warmup = settings.warmup if settings.warmup is not None else (5 if cuda else 2)
    model, cfg = _model(settings, device)
    model.test_cfg['mode'] = 'whole'  # mmsegmentation's benchmark: whole images
    data = _random_batch(settings.batch_size, settings.shape, model.num_classes)
    notes = [f'mode {settings.mode}, batch {settings.batch_size}, input {h}x{w}, '
             f'{"weights of " + settings.ckpt if settings.ckpt else "random weights"}, random input',
             f'{precision.describe()}' + (', torch.compile' if settings.compile else '')]
    if settings.mode == 'eval':
        calibration, source = _calibration(model, cfg, data) if precision.name == 'int8' else (None, '')
        unguarded = settings.precision == 'int8' and not settings.ckpt
        model = fast_model(model, precision, settings.fold_bn, settings.compile, calibration,
                           cache=not unguarded, int8_min_agreement=0.0 if unguarded else None)
        notes.append('torch.inference_mode' + (', BatchNorm folded' if settings.fold_bn else ''))
        if precision.name == 'int8':
            notes.append(f'int8 calibrated on {source}: {model.int8_report.reason}'
                         + ('; random weights, so timed without the guard (their logits nearly tie)' if unguarded
                            else ''))
        step = _eval_step(model, data, device)
        present = lambda: [*model.parameters(), *model.buffers()]  # noqa: E731
    else:
        model.train()
        if precision.channels_last:
            model = channels_last_model(model)
        wrapper = _optim_wrapper(model, cfg, precision)
        if settings.compile:
            model.backbone = torch.compile(model.backbone)
            model.decode_head = torch.compile(model.decode_head)
        step = lambda: model.train_step(data, wrapper)  # noqa: E731

        def present():
            state = [t for s in wrapper.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
            return [*model.parameters(), *model.buffers(), *state]
    timing = time_passes(step, device, warmup, iters, settings.repeat, settings.batch_size, present)
    timing.notes = notes
    guard = None
    if settings.check_accuracy and settings.mode == 'eval':
        guard = accuracy_guard(settings, settings.check_accuracy)
    title = f'{settings.config} ({settings.mode})'
    report = format_timing(timing, title)
    if guard is not None:
        report = report.replace('\nmedian_s=', f'\n{_format_guard(guard, precision)}\nmedian_s=')
    return timing, guard, report


def _val_images(cfg: Config, count: int) -> tuple[list[dict], str] | None:
    """Up to ``count`` preprocessed validation samples of the config's dataset, or None when absent."""
    from seg.datasets.collate import seg_collate
    from seg.registry import DATASETS

    loader_cfg = cfg.get('val_dataloader') or cfg.get('test_dataloader')
    if not loader_cfg:
        return None
    try:
        dataset = DATASETS.build(loader_cfg['dataset'])
    except (FileNotFoundError, ValueError, OSError):
        return None
    n = min(count, len(dataset))
    return [seg_collate([dataset[i]]) for i in range(n)], f'{n} validation images of {type(dataset).__name__}'


def accuracy_guard(settings: BenchmarkSettings, count: int) -> Agreement:
    """Labels of the fast settings against fp32 (BatchNorm not folded) on ``count`` images."""
    device = _device(settings.device)
    fast_precision = _precision(settings, device)
    ref_model, cfg = _model(settings, device)
    ref_model.eval()
    found = _val_images(cfg, count)
    if found is None:
        batches = [_random_batch(1, settings.shape, ref_model.num_classes, seed=i) for i in range(count)]
        source, with_gt = f'{count} random {settings.shape[0]}x{settings.shape[1]} images', False
    else:
        (batches, source), with_gt = found, True
    calibration = None
    if fast_precision.name == 'int8':  # calibrated on the first images, as a run on this data would be
        from seg.engine.quantize import CALIBRATION_IMAGES

        with torch.inference_mode():
            calibration = [ref_model.data_preprocessor(b, False)['inputs'].clone() for b in batches[:CALIBRATION_IMAGES]]
    fast = fast_model(copy.deepcopy(ref_model), fast_precision, settings.fold_bn, calibration=calibration)
    if calibration is not None:
        source += f'; int8 calibrated on the first {len(calibration)}: {fast.int8_report.reason}'
    refs, fasts, gts = [], [], []
    for batch in batches:
        for model, out in ((ref_model, refs), (fast, fasts)):
            result = _eval_step(model, batch, device)()
            out.append(result[0]['pred_sem_seg'].cpu().numpy())
        if with_gt:
            gts.append(np.asarray(batch['data_samples'][0]['gt_sem_seg']).reshape(refs[-1].shape))
    return agreement(refs, fasts, gts if with_gt else None, ref_model.num_classes, ref_model.ignore_index, source)


def _format_guard(guard: Agreement, precision: Precision) -> str:
    """The guard's paragraph; int8's verdict by its own thresholds (:mod:`seg.engine.quantize`)."""
    text = format_agreement(guard, precision.name)
    if precision.name != 'int8':
        return text
    from seg.engine.quantize import INT8_AGREEMENT, INT8_MIOU_POINTS

    change = guard.miou_change
    passes = guard.agree >= INT8_AGREEMENT and (change is None or abs(change) <= INT8_MIOU_POINTS)
    lines = text.split('\n')
    lines[-1] = (f'int8 guard (>= {INT8_AGREEMENT * 100:.1f}% agreement, |mIoU change| <= {INT8_MIOU_POINTS}): '
                 f'{"passes" if passes else "FAILS"}')
    return '\n'.join(lines)
