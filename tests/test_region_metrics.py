"""Boundary and object metrics in an evaluation: tools/eval.py --metrics writes their summary and every
image's counts; the pooled numbers equal the metric functions applied to the same predictions."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from seg.evaluation.boundary import boundary_counts, boundary_iou_from_counts
from seg.evaluation.objects import object_counts
from seg.evaluation.region_metrics import RegionMetrics, mean_pair_iou, size_recall

from .conftest import ROOT, randomize
from .test_robustness import EVAL_CONFIG, folder


def test_region_metrics_pool_the_per_image_counts():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 3, (24, 32)) for _ in range(3)]
    preds = [np.where(rng.random((24, 32)) < 0.8, g, (g + 1) % 3) for g in gts]
    gts[1][:4] = 255
    region = RegionMetrics(['boundary', 'objects'], 3)
    for p, g in zip(preds, gts):
        region.process(torch.from_numpy(p), torch.from_numpy(g))
    counts = np.stack([boundary_counts(p, g, 3) for p, g in zip(preds, gts)])
    summary = region.summary(['a', 'b', 'c'])
    assert summary['bIoU'] == pytest.approx(100 * np.nanmean(boundary_iou_from_counts(counts.sum(0))))
    assert summary['bIoU'] == pytest.approx(float(mean_pair_iou(counts.sum(0))))
    found = np.stack([object_counts(p, g, 3) for p, g in zip(preds, gts)]).sum(0)  # [3, 2, C]
    expected = size_recall(found)
    for b, bucket in enumerate(('small', 'medium', 'large')):
        assert (np.isnan(expected[b]) and np.isnan(summary[f'recall.{bucket}'])) or \
            summary[f'recall.{bucket}'] == pytest.approx(expected[b])
    assert [len(v) for v in region.per_image().values()] == [3, 3, 3, 3]
    with pytest.raises(ValueError, match='unknown metric'):
        RegionMetrics(['erf'], 3)


def test_eval_tool_writes_boundary_and_object_metrics(tmp_path):
    from seg.apis.model_io import build_model
    from seg.engine.config import load_config

    root = folder(tmp_path / 'data', n=3)
    config = tmp_path / 'eval.py'
    config.write_text(EVAL_CONFIG.format(root=ROOT, data=root, policy='stop', batch=1))
    model = randomize(build_model(load_config(str(config))))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, tmp_path / 'm.pth')
    out = subprocess.run([sys.executable, 'tools/eval.py', '--ckpt', str(tmp_path / 'm.pth'), '--config', str(config),
                          '--metrics', 'boundary', 'objects', 'erf', 'attention', '--out', str(tmp_path / 'm.json'), '--precision', 'fp32',
                          '--num-workers', '0'], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    payload = json.loads((tmp_path / 'm.json').read_text())
    assert 'bIoU' in out.stdout and 'recall.small' in out.stdout
    counts = payload['region_counts']
    assert np.asarray(counts['boundary']).shape == (3, 2, 3) and np.asarray(counts['objects']).shape == (3, 3, 2, 3)
    pooled = np.asarray(counts['boundary']).sum(0)
    assert payload['metrics']['bIoU'] == pytest.approx(float(mean_pair_iou(pooled)), abs=0.01)
    assert set(payload['metrics']) >= {'trimap@1px', 'trimap@16px', 'recall.medium', 'sizeIoU.large'}
    assert payload['erf']['images'] == 3 and payload['erf']['radius_50'] <= payload['erf']['radius_95']
    # the demo network's criss-cross head: each pass and the composition, rows that sum to one
    assert payload['attention'] and all(0 <= v['entropy'] <= 1 for v in payload['attention'].values())
    assert 'effective receptive field: radius_50' in out.stdout


def test_a_size_bucket_without_objects_is_not_measured_rather_than_zero():
    counts = np.zeros((2, 3))  # [intersection / union, C]: no class has a pixel in this bucket
    assert np.isnan(mean_pair_iou(counts))
    counts[:, 1] = (3, 4)
    assert mean_pair_iou(counts) == pytest.approx(75.0)
