"""Evaluation of a checkpoint on its config's validation (or test) set, and benchmark-ready results files.

:func:`evaluate` is a few steps: check the outputs, build the fast model, the dataset and the metric;
predict every batch (plain or TTA); write each result file the dataset's own way
(:meth:`seg.datasets.BaseSegDataset.write_result`); let the metric compute the scores and the
per-image counts (``IoUMetric.last_per_image``); report.
"""
from __future__ import annotations

import json
import os
import time

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from seg.engine.loops import report_worker_crash
from seg.engine.precision import Precision, fast_model, resolve_precision
from seg.evaluation.region_metrics import REGION_METRICS, RegionMetrics
from seg.fileio import ensure_dir
from seg.registry import DATASETS, METRICS

from .model_analysis import MODEL_ANALYSES, checkpoint_analyses
from .model_io import model_from_checkpoint

__all__ = ['EVAL_METRICS', 'evaluate']

EVAL_METRICS = REGION_METRICS + MODEL_ANALYSES
"""What ``metrics`` (``tools/eval.py --metrics``) may name beyond mIoU."""


def _dataset_cfg(cfg, split: str) -> dict:
    loader_key = f'{split}_dataloader'
    if loader_key not in cfg:
        raise ValueError(f'the config has no {loader_key!r}; valid splits: val, test')
    dataset = dict(cfg[loader_key].dataset)
    # Configs point test_dataloader at the val split (labelled); the test split of a dataset that has
    # one (Cityscapes: images only, labels withheld) is asked for by name.
    if split == 'test' and 'test' in getattr(DATASETS.get(dataset['type']), 'SPLITS', ()):
        dataset['split'] = 'test'
    return dataset


def _check_outputs(out: str | None, out_dir: str | None, plots: str | None, format_only: bool) -> None:
    if format_only and not out_dir:
        raise ValueError('format_only needs out_dir: the folder the results files go to')
    if out and os.path.isdir(out):
        raise IsADirectoryError(f'--out {out!r} is a folder; give the path of the JSON file to write')
    for folder, what in ((out_dir, '--out-dir'), (plots, 'plots folder'),
                         (os.path.dirname(os.path.abspath(out)) if out else None, 'folder of --out')):
        if folder:
            ensure_dir(folder, what)


def _resolve_tta(model, tta: bool | dict | None) -> dict | None:
    from seg.models.tta import DEFAULT_RATIOS

    tta = model.test_cfg.get('tta') if tta is None else tta
    return dict(ratios=DEFAULT_RATIOS, flip=True) if tta is True else (dict(tta) if tta else None)


def _predict(model, batch: dict, precision: Precision, tta: dict | None) -> list[dict]:
    """The batch's results (its data samples with ``pred_sem_seg``), plain or test-time augmented."""
    from seg.models.tta import DEFAULT_RATIOS, tta_probabilities

    if not batch['inputs']:  # every file of the batch unreadable (on_bad_file='skip')
        return []
    if not tta:
        data = model.data_preprocessor(batch, False)
        inputs = data['inputs']
        if precision.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return model.predict(inputs, data['data_samples'])
    results = []
    for image, sample in zip(batch['inputs'], batch['data_samples']):
        probs = tta_probabilities(model, image.permute(1, 2, 0).numpy(), tta.get('ratios', DEFAULT_RATIOS),
                                  tta.get('flip', True))
        gt = sample.get('gt_sem_seg')
        if gt is not None and tuple(gt.shape) != tuple(probs.shape[1:]):
            probs = torch.nn.functional.interpolate(probs[None], size=gt.shape, mode='bilinear',
                                                    align_corners=model.align_corners)[0]
        results.append(dict(sample, pred_sem_seg=probs.argmax(0)))
    return results


def evaluate(ckpt: str, config: str | None = None, mode: str | None = None, out: str | None = None,
             device: str | None = None, cfg_options: dict | None = None, split: str = 'val',
             num_workers: int = 2, plots: str | None = None, tta: bool | dict | None = None,
             format_only: bool = False, out_dir: str | None = None, precision: str = 'auto',
             channels_last: bool | str = 'auto', fold_bn: bool = True, metrics: tuple | list = ()) -> dict:
    """Evaluate ``ckpt`` (its stored config unless ``config`` is given) and return the metrics.

    Args:
        ckpt: checkpoint path.
        config: optional config path overriding the checkpoint's own.
        mode: 'whole' or 'slide' to override ``model.test_cfg.mode``.
        out: optional JSON path for the metrics (a top-level ``mIoU``; per class; the confusion matrix;
            the per-image pixel counts a comparison's bootstrap needs).
        split: 'val' (``val_dataloader``) or 'test' (``test_dataloader``; a dataset's own test split,
            e.g. Cityscapes' unlabelled test images, where it has one).
        plots: optional folder for ``confusion_matrix.png`` (row-normalised) and ``per_class_iou.png``.
        tta: multi-scale + flip test-time augmentation (:mod:`seg.models.tta`): True for the default
            ratios, or ``dict(ratios=[...], flip=True)``; default ``model.test_cfg.tta``.
        format_only: only write the results files to ``out_dir`` (no metric: the test split has no labels).
        out_dir: where the results files go (Cityscapes: labelId PNGs for the test server).
        precision: 'auto' (bf16 where the hardware has it), 'fp32', 'bf16' or 'fp16' (CUDA).
        channels_last: 'auto' (with bf16 / fp16), True or False.
        fold_bn: fold the BatchNorms into the convolutions (exact up to rounding).
        metrics: beyond mIoU, any of ``'boundary'`` (Boundary IoU, trimap accuracy) and ``'objects'``
            (recall and IoU by object size) (:mod:`seg.evaluation.region_metrics`): printed, added to
            the returned metrics, and their per-image counts written to ``out``; ``'erf'`` (the
            effective receptive field's radii) and ``'attention'`` (what each attention module attends
            to), which need the model itself (:mod:`seg.apis.model_analysis`): printed and written to
            ``out``.

    Returns:
        The metrics (percent), or ``{}`` with ``format_only``.
    """
    from seg.datasets.collate import seg_collate
    from seg.evaluation.metrics import format_table

    options = dict(cfg_options or {})
    if mode is not None:
        if mode not in ('whole', 'slide'):
            raise ValueError(f"--mode must be 'whole' or 'slide', got {mode!r}")
        options['model.test_cfg.mode'] = mode
    _check_outputs(out, out_dir, plots, format_only)
    model, cfg, _ = model_from_checkpoint(ckpt, config, options, device)
    if model.test_cfg.get('mode') == 'slide' and not {'crop_size', 'stride'} <= set(model.test_cfg):
        raise ValueError('slide inference needs model.test_cfg.crop_size and model.test_cfg.stride '
                         "(e.g. --cfg-options model.test_cfg.crop_size='(512,1024)' ...)")
    tta = _resolve_tta(model, tta)
    chosen = resolve_precision(precision, next(model.parameters()).device, channels_last, inference=True)
    model = fast_model(model, chosen, fold_bn)
    print(f'evaluating with {chosen.describe()}' + (f', TTA {tta}' if tta else ''))
    dataset_cfg = _dataset_cfg(cfg, split)
    if tta:
        dataset_cfg['pipeline'] = []  # the ratios act on the original image
    dataset = DATASETS.build(dataset_cfg)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=seg_collate)
    metric = None
    if not format_only:
        metric = METRICS.build(cfg.get(f'{split}_evaluator', cfg.get('val_evaluator')))
        metric.dataset_meta = dataset.metainfo
    images: list[str] = []
    skipped: list[dict] = []
    region = None
    unknown = sorted(set(metrics) - set(EVAL_METRICS))
    if unknown:
        raise ValueError(f'unknown metric(s) {unknown}; valid: {", ".join(EVAL_METRICS)}')
    counted = [m for m in metrics if m in REGION_METRICS]
    if counted and metric is not None:
        region = RegionMetrics(counted, len(dataset.metainfo['classes']), dataset.metainfo['ignore_index'])
    start = time.perf_counter()
    with torch.inference_mode(), report_worker_crash():
        for batch in tqdm(loader, desc='eval', unit='img', dynamic_ncols=True):
            results = _predict(model, batch, chosen, tta)
            for r in results if out_dir else ():
                dataset.write_result(r['pred_sem_seg'].cpu().numpy(), r['img_path'], out_dir)
            if metric is not None:
                metric.process(batch, results)
            if region is not None:
                for r in results:
                    region.process(r['pred_sem_seg'], r['gt_sem_seg'])
            images += [s.get('img_path', '') for s in batch['data_samples']]
            skipped += [dict(path=s['skipped'], error=s['error']) for s in batch.get('skipped', [])]
    seconds = time.perf_counter() - start
    left_out = (f"left out {len(skipped)} unreadable file(s) (on_bad_file='skip'): "
                + ', '.join(s['path'] for s in skipped)) if skipped else ''
    if metric is None:
        print(f'wrote {len(images)} results files to {out_dir}' + (f'; {left_out}' if skipped else ''))
        return {}
    results = metric.evaluate(len(dataset))
    classes = list(dataset.metainfo['classes'])
    print(format_table(metric.last_metrics, classes))
    if region is not None:
        extra = region.summary(classes)
        results.update({k: round(v, 2) for k, v in extra.items()})
        print('  '.join(f'{k}: {v:.2f}' for k, v in extra.items() if k.count('.') <= 1 and not k.startswith('bIoU.')))
    if skipped:
        print(left_out)
    analyses = _model_analyses(ckpt, config, device, [m for m in metrics if m in MODEL_ANALYSES])
    if out:
        _write_json(out, results, metric, ckpt, chosen, tta, classes, images, skipped, seconds,
                    region.per_image() if region is not None else None, analyses)
    if plots:
        _write_plots(metric, classes, plots)
    return results


def _write_json(out: str, results: dict, metric, ckpt: str, precision: Precision, tta: dict | None,
                classes: list, images: list[str], skipped: list[dict], seconds: float,
                region_counts: dict | None = None, analyses: dict | None = None) -> None:
    """``--out``: a top-level mIoU, per class, the confusion matrix, the per-image pixel counts a
    comparison's bootstrap needs, the files left out, and the evaluation's speed (data loading,
    inference and metric together)."""
    payload = dict(mIoU=results['mIoU'], aAcc=results['aAcc'], mAcc=results['mAcc'], checkpoint=ckpt,
                   precision=precision.name, tta=tta, metrics=results, classes=classes,
                   confusion_matrix=metric.last_confusion.tolist() if metric.last_confusion is not None else None,
                   images=images, per_image_counts=metric.last_per_image.tolist(), skipped_files=skipped,
                   seconds=round(seconds, 2), images_per_second=round(len(images) / seconds, 2) if seconds else None)
    if region_counts:
        payload['region_counts'] = region_counts  # per image, in the order of images
    payload.update(analyses or {})
    with open(out, 'w') as f:
        json.dump(payload, f, indent=1)


def _model_analyses(ckpt: str, config: str | None, device: str | None, which: list[str]) -> dict:
    """The analyses of :mod:`seg.apis.model_analysis` in ``which`` (one model load), printed."""
    out = checkpoint_analyses(ckpt, which, device, config)
    if 'erf' in out:
        print('effective receptive field: ' + ', '.join(f'{k} {v:.1f}' for k, v in out['erf'].items()
                                                          if k.startswith(('radius_', 'area_'))))
    for key, stats in out.get('attention', {}).items():
        print(f'attention {key}: ' + ', '.join(f'{k} {v:.3f}' for k, v in stats.items() if isinstance(v, (int, float))))
    return out


def _write_plots(metric, classes: list, folder: str) -> None:
    """The confusion matrix (when the metric kept it) and the per-class IoU bars of an evaluation."""
    from seg.visualization.plots import plot_confusion_matrix, plot_per_class_iou

    written = [plot_per_class_iou(metric.last_metrics['IoU'].tolist(), classes,
                                  os.path.join(folder, 'per_class_iou.png'))]
    if metric.last_confusion is not None:
        written.append(plot_confusion_matrix(metric.last_confusion.numpy(), classes,
                                             os.path.join(folder, 'confusion_matrix.png')))
    else:
        print('the evaluator kept no confusion matrix (collect_confusion=False): confusion_matrix.png skipped')
    print('plots: ' + ', '.join(written))
