"""Evaluation of a checkpoint on its config's validation set."""
from __future__ import annotations

import json
import os

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from seg.engine.loops import report_worker_crash
from seg.fileio import ensure_dir
from seg.registry import DATASETS, METRICS

from .model_io import model_from_checkpoint


def evaluate(ckpt: str, config: str | None = None, mode: str | None = None, out: str | None = None,
             device: str | None = None, cfg_options: dict | None = None, split: str = 'val',
             num_workers: int = 2, plots: str | None = None) -> dict:
    """Evaluate ``ckpt`` (its stored config unless ``config`` is given) and return the metrics.

    Args:
        ckpt: checkpoint path.
        config: optional config path overriding the checkpoint's own.
        mode: 'whole' or 'slide' to override ``model.test_cfg.mode``.
        out: optional JSON path for the metrics (summary, per class, confusion matrix).
        split: 'val' (``val_dataloader``) or 'test' (``test_dataloader``).
        plots: optional folder for ``confusion_matrix.png`` (row-normalised) and ``per_class_iou.png``.
    """
    from seg.datasets.collate import seg_collate
    from seg.evaluation.metrics import format_table

    options = dict(cfg_options or {})
    if mode is not None:
        if mode not in ('whole', 'slide'):
            raise ValueError(f"--mode must be 'whole' or 'slide', got {mode!r}")
        options['model.test_cfg.mode'] = mode
    model, cfg, _ = model_from_checkpoint(ckpt, config, options, device)
    if model.test_cfg.get('mode') == 'slide' and not {'crop_size', 'stride'} <= set(model.test_cfg):
        raise ValueError('slide inference needs model.test_cfg.crop_size and model.test_cfg.stride '
                         "(e.g. --cfg-options model.test_cfg.crop_size='(512,1024)' ...)")
    loader_key = f'{split}_dataloader'
    if loader_key not in cfg:
        raise ValueError(f'the config has no {loader_key!r}; valid splits: val, test')
    dataset = DATASETS.build(cfg[loader_key].dataset)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers,
                        collate_fn=seg_collate)
    evaluator_cfg = cfg.get(f'{split}_evaluator', cfg.get('val_evaluator'))
    metric = METRICS.build(evaluator_cfg)
    metric.dataset_meta = dataset.metainfo
    images: list[str] = []
    with torch.no_grad(), report_worker_crash():
        for batch in tqdm(loader, desc='eval', unit='img', dynamic_ncols=True):
            metric.process(batch, model.test_step(batch))
            images += [s.get('img_path', '') for s in batch['data_samples']]
    per_image = per_image_counts(metric.results, metric.collect_confusion)
    results = metric.evaluate(len(dataset))
    print(format_table(metric.last_metrics, list(dataset.metainfo['classes'])))
    if out:
        if os.path.isdir(out):
            raise IsADirectoryError(f'--out {out!r} is a folder; give the path of the JSON file to write')
        ensure_dir(os.path.dirname(os.path.abspath(out)), 'folder of --out')
        payload = dict(mIoU=results['mIoU'], aAcc=results['aAcc'], mAcc=results['mAcc'], checkpoint=ckpt,
                       metrics=results, classes=list(dataset.metainfo['classes']),
                       confusion_matrix=metric.last_confusion.tolist() if metric.last_confusion is not None else None,
                       images=images, per_image_counts=per_image.tolist())
        with open(out, 'w') as f:
            json.dump(payload, f, indent=2)
    if plots:
        _write_plots(metric, list(dataset.metainfo['classes']), plots)
    return results


def per_image_counts(results: list[torch.Tensor], confusion: bool) -> torch.Tensor:
    """(N, 3, C) per-image ``(tp, gt_area, pred_area)`` from what :class:`IoUMetric` kept per sample
    (a [C, C] confusion matrix each when ``confusion``, else the [3, C] counts themselves)."""
    rows = []
    for r in results:
        r = r.to_dense() if r.is_sparse else r
        rows.append(torch.stack([r.diagonal(), r.sum(1), r.sum(0)]) if confusion else r)
    return torch.stack(rows).to(torch.int64)


def _write_plots(metric, classes: list, folder: str) -> None:
    """The confusion matrix (when the metric kept it) and the per-class IoU bars of an evaluation."""
    from seg.visualization.plots import plot_confusion_matrix, plot_per_class_iou

    ensure_dir(folder, 'plots folder')
    written = [plot_per_class_iou(metric.last_metrics['IoU'].tolist(), classes,
                                  os.path.join(folder, 'per_class_iou.png'))]
    if metric.last_confusion is not None:
        written.append(plot_confusion_matrix(metric.last_confusion.numpy(), classes,
                                             os.path.join(folder, 'confusion_matrix.png')))
    else:
        print('the evaluator kept no confusion matrix (collect_confusion=False): confusion_matrix.png skipped')
    print('plots: ' + ', '.join(written))
