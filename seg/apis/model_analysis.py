"""Analyses of a checkpoint that need its model, not only its predictions: the effective receptive
field (:mod:`seg.evaluation.erf`) and what its attention modules attend to
(:mod:`seg.evaluation.attention_stats`), on the validation images of its config.
``tools/eval.py --metrics erf attention`` and a comparison's collect step call
:func:`checkpoint_analyses`, which loads the model once for both.
"""
from __future__ import annotations

import copy
import math

import cv2
import numpy as np
import torch

from seg.datasets.collate import seg_collate
from seg.evaluation.attention_stats import attention_means, attention_row_stats, gate_stats
from seg.evaluation.erf import effective_receptive_field, erf_radius
from seg.registry import DATASETS
from seg.visualization.attention import AttentionRecorder

from .model_io import model_from_checkpoint

__all__ = ['ANALYSIS_FORMAT', 'ATTENTION_IMAGES', 'ATTENTION_POINTS', 'ERF_IMAGES', 'MODEL_ANALYSES', 'attention_of', 'checkpoint_analyses',
           'erf_of']

MODEL_ANALYSES = ('erf', 'attention')
"""The analyses that need a checkpoint's model, not only its predictions."""

ANALYSIS_FORMAT = 2
"""The layout of what :func:`erf_of` and :func:`attention_of` return (2: the attention statistics by
distance). A comparison's collect step records it per run and recomputes a stored analysis of another
layout, or one older than its checkpoint."""


def checkpoint_analyses(ckpt: str, which=MODEL_ANALYSES, device: str | None = None, config: str | None = None) -> dict:
    """``{'erf': erf_of(...), 'attention': attention_of(...)}`` for the analyses in ``which``, on the
    checkpoint's model (loaded once, fp32, BatchNorm as trained) and its config's validation set.
    ``config`` overrides the checkpoint's.

    Raises:
        ValueError: an unknown analysis name.
    """
    unknown = sorted(set(which) - set(MODEL_ANALYSES))
    if unknown:
        raise ValueError(f'unknown analysis {unknown}; valid: {", ".join(MODEL_ANALYSES)}')
    if not which:
        return {}
    model, cfg, _ = model_from_checkpoint(ckpt, config, device=device)
    dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    run = {'erf': erf_of, 'attention': attention_of}
    return {name: run[name](model, dataset) for name in MODEL_ANALYSES if name in which}


ERF_IMAGES = 32
"""Validation images the effective receptive field of a run is averaged over."""


def erf_of(model: torch.nn.Module, dataset, images: int = ERF_IMAGES) -> dict:
    """The effective receptive field of ``model`` (in eval mode): the 50 % / 95 % radii and areas
    (:func:`seg.evaluation.erf.erf_radius`) and the heatmap, normalised to its maximum (the mean absolute
    input gradient of the centre pixel's predicted-class logit over the first ``images`` samples of
    ``dataset`` of the first sample's size; :mod:`seg.evaluation.erf`); {} when ``dataset`` yields no
    image."""
    samples = []
    for i in range(len(dataset)):
        sample = dataset[i]
        if 'inputs' not in sample or (samples and sample['inputs'].shape != samples[0]['inputs'].shape):
            continue
        samples.append(sample)
        if len(samples) == images:
            break
    if not samples:
        return {}
    batch = model.data_preprocessor(seg_collate(samples), False)
    heatmap = effective_receptive_field(lambda x: model(x, mode='tensor'), batch['inputs'].float())
    return dict(erf_radius(heatmap), images=len(samples), size=list(heatmap.shape),
                heatmap=(heatmap / max(heatmap.max(), 1e-30)).round(4).tolist())


ATTENTION_IMAGES, ATTENTION_POINTS = 8, 64
"""Validation images, and query pixels per image, of a run's attention statistics."""


def attention_of(model: torch.nn.Module, dataset, images: int = ATTENTION_IMAGES,
                 points_per_image: int = ATTENTION_POINTS) -> dict:
    """What each attention module of ``model`` (in eval mode) attends to, on the first ``images`` samples
    of ``dataset``: for ``points_per_image`` query pixels of each image
    (a fixed random draw of feature positions), every per-pixel attention map the module declares
    (criss-cross passes and their composition, PAM and non-local rows) goes through
    :func:`seg.evaluation.attention_stats.attention_row_stats` against the ground truth at feature
    resolution (nearest); spatial and channel gates through ``gate_stats``.

    Returns:
        Per ``'<module>/<map>'``: the means over every row of the same-class mass, its uniform baseline,
        the normalised entropy and the mean distance (in feature pixels), and, one value per distance
        bucket, the mass, the same-class mass and their uniform baselines (``*_by_distance`` lists) with
        the buckets' ``distance_edges`` (feature pixels; ``None`` for the open last edge, so that the file
        is plain JSON); per gate, the spread and the class gap. {} for a model without attention modules.
    """
    num_classes, ignore = model.num_classes, dataset.metainfo['ignore_index']
    rng = np.random.default_rng(0)
    sums: dict[str, dict] = {}
    gates: dict[str, list] = {}
    recorder = AttentionRecorder(model)
    if not recorder.modules:
        return {}
    for index in range(min(images, len(dataset))):
        sample = dataset[index]
        if 'inputs' not in sample or 'gt_sem_seg' not in sample['data_samples']:
            continue
        batch = model.data_preprocessor(seg_collate([sample]), False)
        recorder.records.clear()
        with recorder, torch.no_grad():
            model(batch['inputs'], mode='tensor')
        gt = sample['data_samples']['gt_sem_seg'].numpy().astype(np.int64)
        for name, module in recorder.modules.items():
            records = recorder.records.get(name)
            if not records:
                continue
            for key, amap in module.maps(records).items():
                values = amap.values.float().numpy()
                if amap.kind in ('spatial', 'channel'):
                    labels = cv2.resize(gt.astype(np.int32), values.shape[::-1], interpolation=cv2.INTER_NEAREST) \
                        if amap.kind == 'spatial' else None
                    gates.setdefault(f'{name}/{key}', []).append(gate_stats(values, labels, num_classes, ignore))
            probe = next((m for m in module.maps(records, lambda h, w: (0, 0)).values() if m.kind == 'point'), None)
            if probe is None:
                continue
            h, w = probe.values.shape[-2:]
            labels = cv2.resize(gt.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
            points = rng.integers(0, (h, w), size=(points_per_image, 2))
            rows: dict[str, list] = {}
            for y, x in points:
                for key, amap in module.maps(records, lambda _h, _w, y=int(y), x=int(x): (y, x)).items():
                    if amap.kind == 'point':
                        rows.setdefault(key, []).append(amap.values.float().reshape(-1).numpy())
            for key, row_list in rows.items():
                part = attention_row_stats(np.stack(row_list), points, labels, num_classes, ignore)
                total = sums.setdefault(f'{name}/{key}', {})
                for k, v in part.items():
                    total[k] = v if k == 'distance_edges' or k not in total else total[k] + v
    out: dict = {}
    for key, total in sums.items():
        means = attention_means(total)['all']
        out[key] = {k: float(v) if np.ndim(v) == 0 else [float(x) for x in v] for k, v in means.items()}
        out[key]['distance_edges'] = [float(e) if math.isfinite(e) else None for e in total['distance_edges']]
    for key, stats in gates.items():
        entry = {'spread': float(np.mean([g['std'] for g in stats]))}
        gaps = [g['class_gap'] for g in stats if 'class_gap' in g and np.isfinite(g['class_gap'])]
        if gaps:
            entry['class_gap'] = float(np.nanmean(gaps))
        out[key] = entry
    return out
