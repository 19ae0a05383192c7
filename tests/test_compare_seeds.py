"""Comparisons over seeds: the statistics against hand-computed values, and what a 2-model, 2-seed
comparison on a tiny folder dataset (void label 11) writes and reports, and that it trains nothing when
run again (checked on tests/test_compare_plan.py's sequential comparison, so both share one training)."""
import json
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from seg.analysis.stats import (
    Interval,
    bootstrap_paired_difference,
    iou_from_counts,
    mean_interval,
    miou_from_counts,
)


# ------------------------------------------------------------------------------------- statistics
def test_mean_std_and_t_interval_by_hand():
    iv = mean_interval([70.0, 72.0, 74.0])
    # mean 72, sample std sqrt((4 + 0 + 4) / 2) = 2, t(0.975, 2) = 4.302652729911275
    assert (iv.mean, iv.std, iv.n) == (72.0, 2.0, 3)
    half = 4.302652729911275 * 2.0 / math.sqrt(3)
    assert iv.low == pytest.approx(72.0 - half, abs=1e-9) and iv.high == pytest.approx(72.0 + half, abs=1e-9)
    one = mean_interval([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.low)
    assert mean_interval([1.0, math.nan, 3.0]).mean == 2.0  # a class absent from a run is left out
    assert Interval(1.0, 0.5, -0.1, 2.0, 3).contains_zero and not Interval(1.0, 0.5, 0.1, 2.0, 3).contains_zero


def test_iou_and_miou_from_counts_by_hand():
    # two images, two classes: (tp, gt, pred) per class
    counts = np.array([[[3, 0], [4, 0], [5, 0]],      # image 0: class 0 tp 3 of gt 4, pred 5; class 1 absent
                       [[1, 2], [1, 3], [2, 2]]])     # image 1
    # summed: class 0 tp 4, gt 5, pred 7 -> 4 / (5 + 7 - 4) = 0.5; class 1 tp 2, gt 3, pred 2 -> 2 / 3
    np.testing.assert_allclose(iou_from_counts(counts.sum(0)), [0.5, 2 / 3])
    assert miou_from_counts(counts) == pytest.approx((0.5 + 2 / 3) / 2)
    assert math.isnan(iou_from_counts(np.zeros((3, 1)))[0])  # no union: no IoU


def _counts(rng, n=6, c=3):
    gt = rng.integers(5, 20, (n, c))
    pred = rng.integers(5, 20, (n, c))
    tp = np.minimum(gt, pred) - rng.integers(0, 5, (n, c)).clip(0, None)
    return np.stack([tp.clip(0, None), gt, pred], axis=1)  # [N, 3, C]


def test_paired_bootstrap_point_estimate_and_a_naive_loop():
    rng = np.random.default_rng(0)
    model = [_counts(rng), _counts(rng)]
    base = [_counts(rng), _counts(rng)]
    miou, per_class = bootstrap_paired_difference(model, base, replicates=200, seed=7)
    # The point estimate: mIoU of each seed's run minus the baseline's run of that seed, averaged.
    expected = np.mean([miou_from_counts(m) - miou_from_counts(b) for m, b in zip(model, base)])
    assert miou.mean == pytest.approx(expected, abs=1e-12)
    # The image-only interval (these runs), recomputed one replicate at a time with the same image draws.
    draws = np.random.default_rng(7).integers(0, 6, size=(200, 6))
    reps = [np.mean([miou_from_counts(m[d]) - miou_from_counts(b[d]) for m, b in zip(model, base)]) for d in draws]
    low, high = np.quantile(reps, [0.025, 0.975])
    image = miou.image_interval
    assert (image.low, image.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    c1 = [np.mean([iou_from_counts(m[d].sum(0))[1] - iou_from_counts(b[d].sum(0))[1] for m, b in zip(model, base)])
          for d in draws]
    assert per_class[1].image_interval.low == pytest.approx(np.quantile(c1, 0.025), abs=1e-12)
    # Two seeds: an interval over seeds and images exists, no verdict does.
    assert miou.seeds == 2 and miou.low < image.low and image.high < miou.high and miou.verdict == 'too few seeds'


def test_identical_runs_differ_by_exactly_zero_and_a_shift_is_distinguishable():
    rng = np.random.default_rng(1)
    runs = [_counts(rng), _counts(rng), _counts(rng)]
    miou, per_class = bootstrap_paired_difference(runs, runs, replicates=100)
    assert (miou.mean, miou.low, miou.high) == (0.0, 0.0, 0.0) and miou.contains_zero
    assert miou.verdict == 'not distinguishable'
    better = [r.copy() for r in runs]
    for r in better:
        r[:, 0] = r[:, 1]  # every pixel of every class right in the model: IoU 1 everywhere
        r[:, 2] = r[:, 1]
    miou, _ = bootstrap_paired_difference(better, runs, replicates=100)
    assert miou.low > 0 and not miou.contains_zero and miou.verdict == 'distinguishable'
    # The same shift on two seeds: "too few seeds", whatever the interval.
    miou, _ = bootstrap_paired_difference(better[:2], runs[:2], replicates=100)
    assert miou.image_interval.low > 0 and miou.verdict == 'too few seeds'
    with pytest.raises(ValueError, match='same number'):
        bootstrap_paired_difference(runs, runs[:1])


# ------------------------------------------------------------------------------- end to end
VOID = 11
DATA = """
classes = {classes}
folder = dict(type='FolderDataset', data_root='{root}', classes=classes, img_suffix='.png', seg_map_suffix='.png',
              ignore_index=11)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(type='SeededInfiniteSampler', shuffle=True), collate_fn=dict(type='seg_collate'),
                        dataset=dict(img_dir='train/images', ann_dir='train/labels',
                                     pipeline=[dict(type='RandomFlip', prob=0.5)], **folder))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False), collate_fn=dict(type='seg_collate'),
                      dataset=dict(img_dir='val/images', ann_dir='val/labels', test_mode=True, **folder))
val_evaluator = dict(type='IoUMetric')
"""


def write_folder_dataset(root, rng):
    for split, n in (('train', 6), ('val', 3)):
        (root / split / 'images').mkdir(parents=True)
        (root / split / 'labels').mkdir(parents=True)
        for i in range(n):
            labels = rng.integers(0, 11, (32, 48), dtype=np.uint8)
            labels[:4] = VOID  # void rows, as CamVid's unlabelled border
            image = (labels[..., None] * 20 + rng.integers(0, 20, (32, 48, 3))).astype(np.uint8)
            cv2.imwrite(str(root / split / 'images' / f'{i}.png'), image)
            cv2.imwrite(str(root / split / 'labels' / f'{i}.png'), labels)


def check_two_models_two_seeds_then_nothing_to_train(result, settings) -> None:
    """What a comparison of ``fcn`` and ``ccnet:recurrence=1`` over 2 seeds, trained by ``run_comparison``
    with ``settings`` on :func:`write_folder_dataset`'s data, wrote and reports; then the same call again
    trains nothing, and another schedule in its folder is an error. Run by
    ``tests/test_compare_plan.py`` on its sequential comparison (one set of trainings for both files)."""
    from seg.apis.compare import run_comparison, write_report

    out = Path(settings.out_dir)
    iters = settings.iters
    paths = write_report(result, str(out))
    for key in ('report', 'json', 'csv', 'chart', 'differences'):
        assert (out / paths[key].split('/')[-1]).is_file(), key
    for label in ('fcn', 'ccnet_recurrence-1'):
        for seed in (0, 1):
            run = out / 'runs' / label / f'seed{seed}'
            record = json.loads((run / 'run.json').read_text())
            assert record['done'] and record['seed'] == seed and record['config']['randomness']['seed'] == seed
            assert record['config']['model']['ignore_index'] == VOID  # from the dataset
            assert record['config']['model']['num_classes'] == 11
            metrics = json.loads((run / 'metrics.json').read_text())
            assert len(metrics['per_image_counts']) == 3 and metrics['mIoU'] == metrics['metrics']['mIoU']
    results = json.loads((out / 'results.json').read_text())
    assert results['baseline'] == 'fcn' and results['classes'] == [f'c{i}' for i in range(11)]
    assert results['schedule']['iters'] == iters and results['schedule']['seeds'] == [0, 1]
    assert results['schedule']['ignore_index'] == VOID
    fcn, cc = results['models']
    assert len(fcn['runs']) == len(cc['runs']) == 2 and fcn['difference'] is None
    assert set(cc['difference']) == {'mean', 'std', 'low', 'high', 'n'} and cc['difference']['n'] == 50
    # A few steps from the same seeds leave both models near chance (mIoU ~2 %, 11 classes): their
    # difference, a few tenths of a point either way, cannot be told from 0 on 3 images.
    assert cc['difference']['low'] < 0 < cc['difference']['high'] and cc['distinguishable'] is False
    assert set(cc['class_difference']) == set(results['classes'])
    assert fcn['summary']['mIoU']['n'] == 2  # mean, std and interval over the two seeds
    seeds_miou = [r['mIoU'] for r in fcn['runs']]
    assert fcn['summary']['mIoU']['mean'] == pytest.approx(np.mean(seeds_miou))
    report = (out / 'report.md').read_text()
    assert 'mIoU vs baseline' in report and 'Schedule (the same for every model)' in report
    assert 'Machine:' in report and 'not distinguishable' in report
    # Two seeds: no verdict either way, said as such; the image-only interval is named as such.
    assert cc['verdict'] == 'too few seeds' and cc['difference_detail']['seeds'] == 2
    assert 'too few seeds' in report and 'image-only 95% CI (these runs)' in report

    # Run again with the same arguments: nothing is trained, every run is kept.
    checkpoints = {p: p.stat().st_mtime_ns for p in out.glob('runs/*/seed*/*.pth')}
    log = []
    again = run_comparison(['fcn', 'ccnet:recurrence=1'], settings, log=log.append)
    assert sum('finished earlier, kept' in line for line in log) == 4
    assert not any('training' in line or 'resuming' in line for line in log)
    assert {p: p.stat().st_mtime_ns for p in out.glob('runs/*/seed*/*.pth')} == checkpoints
    assert again.models[1].difference.mean == pytest.approx(result.models[1].difference.mean)
    # Another schedule in the same folder is an error, not an overwrite.
    with pytest.raises(ValueError, match='holds a run of another configuration'):
        run_comparison(['fcn'], replace(settings, iters=iters + 1), log=log.append)
