"""Tests of seg.evaluation: confusion matrix, IoU / Acc metrics and the mmengine IoUMetric."""
from __future__ import annotations

import math
import pickle

import pytest
import torch
from mmengine.logging import MMLogger

from seg.evaluation import (
    IoUMetric,
    confusion_matrix,
    format_table,
    metrics_from_areas,
    metrics_from_confusion,
)
from seg.registry import METRICS

IGNORE = 255


# --------------------------------------------------------------------------- references

def naive_confusion(pred: torch.Tensor, gt: torch.Tensor, n: int, ignore: int = IGNORE) -> list[list[int]]:
    """Pixel-by-pixel count in plain Python."""
    cm = [[0] * n for _ in range(n)]
    for p, g in zip(pred.reshape(-1).tolist(), gt.reshape(-1).tolist()):
        if g != ignore:
            cm[g][p] += 1
    return cm


def naive_metrics(pred: torch.Tensor, gt: torch.Tensor, n: int, ignore: int = IGNORE) -> dict:
    """Per-class loop over the pixels, no confusion matrix."""
    pixels = [(p, g) for p, g in zip(pred.reshape(-1).tolist(), gt.reshape(-1).tolist()) if g != ignore]
    iou, acc = [], []
    for c in range(n):
        tp = sum(1 for p, g in pixels if p == c and g == c)
        fn = sum(1 for p, g in pixels if p != c and g == c)
        fp = sum(1 for p, g in pixels if p == c and g != c)
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
        acc.append(tp / (tp + fn) if tp + fn else math.nan)
    correct = sum(1 for p, g in pixels if p == g)

    def nanmean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    return {'IoU': iou, 'Acc': acc, 'aAcc': correct / len(pixels) if pixels else math.nan,
            'mIoU': nanmean(iou), 'mAcc': nanmean(acc)}


def same(a: float, b: float, tol: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def same_dict(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def random_pair(seed: int, shape: tuple[int, ...], n: int, *, absent_gt: int | None = None,
                absent_both: int | None = None, ignore_frac: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random labels with ignored pixels; optionally one class missing from gt, one from both."""
    g = torch.Generator().manual_seed(seed)
    classes = [c for c in range(n) if c != absent_both]
    gt_classes = [c for c in classes if c != absent_gt]
    gt = torch.tensor(gt_classes)[torch.randint(len(gt_classes), shape, generator=g)]
    pred = torch.tensor(classes)[torch.randint(len(classes), shape, generator=g)]
    # Make predictions partly right so that IoUs are not all tiny.
    agree = torch.rand(shape, generator=g) < 0.5
    pred = torch.where(agree, gt, pred)
    gt[torch.rand(shape, generator=g) < ignore_frac] = IGNORE
    return pred, gt


# --------------------------------------------------------------------------- functions

def test_hand_computed_example():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [1, 2, 0, 3]])
    cm = confusion_matrix(pred, gt, num_classes=4)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    m = metrics_from_confusion(cm)
    # class 0: tp 1, fn 1, fp 0; class 1: tp 2, fp 2; class 2: tp 1, fn 1; class 3: absent everywhere
    # (its prediction sits on an ignored pixel).
    assert m['IoU'][:3].tolist() == pytest.approx([1 / 2, 2 / 4, 1 / 2])
    assert math.isnan(m['IoU'][3]) and math.isnan(m['Acc'][3])
    assert m['Acc'][:3].tolist() == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert m['aAcc'] == pytest.approx(4 / 6)
    assert m['mIoU'] == pytest.approx(0.5)
    assert m['mAcc'] == pytest.approx(2 / 3)


@pytest.mark.parametrize('seed', range(4))
def test_confusion_matrix_matches_pixel_loop(seed):
    n = 5
    pred, gt = random_pair(seed, (2, 13, 17), n, absent_gt=1, absent_both=3)
    cm = confusion_matrix(pred, gt, n)
    assert cm.shape == (n, n) and cm.dtype == torch.int64
    assert cm.tolist() == naive_confusion(pred, gt, n)
    assert int(cm.sum()) == int((gt != IGNORE).sum())


@pytest.mark.parametrize('seed', range(4))
def test_metrics_match_naive_per_class_loop(seed):
    n = 6
    absent_gt, absent_both = 2, 4
    pred, gt = random_pair(100 + seed, (19, 23), n, absent_gt=absent_gt, absent_both=absent_both)
    m = metrics_from_confusion(confusion_matrix(pred, gt, n))
    ref = naive_metrics(pred, gt, n)
    assert m['IoU'].dtype == torch.float64 and m['Acc'].dtype == torch.float64
    for c in range(n):
        assert same(m['IoU'][c].item(), ref['IoU'][c]), c
        assert same(m['Acc'][c].item(), ref['Acc'][c]), c
    for k in ('aAcc', 'mIoU', 'mAcc'):
        assert isinstance(m[k], float)
        assert same(m[k], ref[k]), k
    # The class absent from the gt but predicted has IoU 0 (counted) and Acc NaN (skipped).
    assert m['IoU'][absent_gt].item() == 0.0
    assert math.isnan(m['Acc'][absent_gt].item())
    # The class absent from both is NaN and left out of the means.
    assert math.isnan(m['IoU'][absent_both].item()) and math.isnan(m['Acc'][absent_both].item())
    present = [c for c in range(n) if c != absent_both]
    assert m['mIoU'] == pytest.approx(sum(m['IoU'][c].item() for c in present) / len(present))
    values = torch.cat([m['IoU'], m['Acc']])
    values = values[~values.isnan()]
    assert bool(((values >= 0) & (values <= 1)).all())


def test_perfect_prediction_and_all_ignored():
    gt = torch.tensor([[0, 1], [2, 255]])
    m = metrics_from_confusion(confusion_matrix(gt.clone(), gt, 3))
    assert m['aAcc'] == m['mIoU'] == m['mAcc'] == 1.0
    m = metrics_from_confusion(confusion_matrix(torch.zeros(2, 2, dtype=torch.long),
                                                torch.full((2, 2), 255), 3))
    assert all(math.isnan(m[k]) for k in ('aAcc', 'mIoU', 'mAcc'))


def test_prediction_on_ignored_pixel_is_skipped():
    gt = torch.tensor([0, 255, 1])
    pred = torch.tensor([0, 255, 1])  # 255 predicted where the gt is ignored: fine
    assert confusion_matrix(pred, gt, 2).tolist() == [[1, 0], [0, 1]]


def test_other_ignore_index_and_dtypes():
    gt = torch.tensor([0, -1, 1, 1], dtype=torch.int16)
    pred = torch.tensor([0, 7, 0, 1], dtype=torch.uint8)
    assert confusion_matrix(pred, gt, 2, ignore_index=-1).tolist() == [[1, 0], [1, 1]]


def test_out_of_range_values_are_named():
    gt = torch.tensor([0, 1, 7, 9, 255])
    with pytest.raises(ValueError, match=r'gt has values \[7, 9\]'):
        confusion_matrix(torch.zeros(5, dtype=torch.long), gt, 3)
    with pytest.raises(ValueError, match=r'gt has values \[-2\]'):
        confusion_matrix(torch.zeros(2, dtype=torch.long), torch.tensor([0, -2]), 3)
    with pytest.raises(ValueError, match=r'pred has values \[3, 255\]'):
        confusion_matrix(torch.tensor([3, 255, 0]), torch.tensor([0, 1, 2]), 3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='same shape'):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='integer class indices'):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='num_classes'):
        confusion_matrix(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match='square'):
        metrics_from_confusion(torch.zeros(2, 3))
    with pytest.raises(ValueError, match='non-negative'):
        metrics_from_confusion(torch.tensor([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match='exceed'):
        metrics_from_areas(torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([3.0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_confusion_matrix_cuda_matches_cpu():
    pred, gt = random_pair(7, (64, 96), 19)
    cm = confusion_matrix(pred.cuda(), gt.cuda(), 19)
    assert cm.device.type == 'cuda'
    assert torch.equal(cm.cpu(), confusion_matrix(pred, gt, 19))
    m = metrics_from_confusion(cm)
    assert m['mIoU'] == pytest.approx(metrics_from_confusion(cm.cpu())['mIoU'])


def test_format_table():
    gt = torch.tensor([0, 0, 1, 1, 255])
    pred = torch.tensor([0, 1, 1, 1, 2])
    m = metrics_from_confusion(confusion_matrix(pred, gt, 3))
    text = format_table(m, ['road', 'traffic light', 'sky'])
    lines = text.splitlines()
    assert lines[0].split() == ['Class', 'IoU', 'Acc']
    rows = {line[:13].strip(): line[13:].split() for line in lines[2:5]}
    assert rows == {'road': ['50.00', '50.00'], 'traffic light': ['66.67', '100.00'], 'sky': ['nan', 'nan']}
    # Columns aligned: header, rules and rows share one width.
    assert len({len(line) for line in lines[:-1]}) == 1
    assert lines[-1] == 'aAcc: 75.00  mIoU: 58.33  mAcc: 75.00'
    with pytest.raises(ValueError, match='2 class names for 3'):
        format_table(m, ['a', 'b'])


# --------------------------------------------------------------------------- IoUMetric

def _samples(n: int, seeds: list[int]) -> list[dict]:
    shapes = [(11, 14), (9, 20), (16, 8), (7, 7)]
    out = []
    for i, seed in enumerate(seeds):
        pred, gt = random_pair(seed, shapes[i % len(shapes)], n, absent_gt=1, absent_both=3)
        out.append(dict(pred_sem_seg=pred, gt_sem_seg=gt))
    return out


@pytest.mark.parametrize('collect_confusion', [True, False])
def test_iou_metric_accumulates_like_naive_loop(collect_confusion, tmp_path):
    n = 5
    names = ['road', 'wall', 'car', 'sky', 'person']
    metric = METRICS.build(dict(type='IoUMetric', collect_confusion=collect_confusion))
    assert isinstance(metric, IoUMetric)
    metric.dataset_meta = dict(classes=names)
    samples = _samples(n, [11, 12, 13, 14, 15])
    metric.process(None, samples[:2])
    metric.process(None, samples[2:])
    assert len(metric.results) == 5
    assert all(r.device.type == 'cpu' for r in metric.results)

    MMLogger.get_instance(f'test_iou_metric_{collect_confusion}', log_file=str(tmp_path / 'log.txt'))
    out = metric.evaluate(size=5)

    all_pred = torch.cat([s['pred_sem_seg'].reshape(-1) for s in samples])
    all_gt = torch.cat([s['gt_sem_seg'].reshape(-1) for s in samples])
    ref = naive_metrics(all_pred, all_gt, n)
    assert set(out) == {'aAcc', 'mIoU', 'mAcc'} | {f'{k}.{c}' for k in ('IoU', 'Acc') for c in names}
    assert all(isinstance(v, float) for v in out.values())
    for k in ('aAcc', 'mIoU', 'mAcc'):
        assert out[k] == pytest.approx(round(100 * ref[k], 2), abs=1e-9), k
    for c, name in enumerate(names):
        assert same(out[f'IoU.{name}'], round(100 * ref['IoU'][c], 2)), name
        assert same(out[f'Acc.{name}'], round(100 * ref['Acc'][c], 2)), name
    assert math.isnan(out['IoU.sky']) and out['IoU.wall'] == 0.0 and math.isnan(out['Acc.wall'])

    # The unrounded fractions and the summed matrix stay on the object.
    assert metric.last_metrics['classes'] == names
    assert metric.last_metrics['mIoU'] == pytest.approx(ref['mIoU'])
    if collect_confusion:
        assert metric.last_confusion.tolist() == naive_confusion(all_pred, all_gt, n)
    else:
        assert metric.last_confusion is None
    assert metric.results == []  # evaluate() resets for the next round
    log = (tmp_path / 'log.txt').read_text()
    assert 'per class results' in log and 'person' in log and f'{100 * ref["mIoU"]:.2f}' in log


def test_iou_metric_results_survive_pickling():
    """mmengine gathers results across ranks by pickling them."""
    metric = IoUMetric(num_classes=5)
    metric.process(None, _samples(5, [1, 2, 3]))
    restored = pickle.loads(pickle.dumps(metric.results))
    twin = IoUMetric(num_classes=5)
    assert same_dict(twin.compute_metrics(restored), metric.compute_metrics(metric.results))


def test_iou_metric_accepts_pixel_data_dicts_and_leading_dim():
    pred, gt = random_pair(5, (6, 9), 3)
    a = IoUMetric(num_classes=3)
    a.process(None, [dict(pred_sem_seg=pred, gt_sem_seg=gt)])
    b = IoUMetric(num_classes=3)
    b.process(None, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    assert same_dict(a.compute_metrics(a.results), b.compute_metrics(b.results))


def test_iou_metric_class_names_and_num_classes():
    metric = IoUMetric(num_classes=2)
    assert metric.prefix == ''
    metric.process(None, [dict(pred_sem_seg=torch.tensor([[0, 1]]), gt_sem_seg=torch.tensor([[0, 0]]))])
    out = metric.compute_metrics(metric.results)
    assert out['IoU.0'] == 50.0 and out['Acc.1'] != out['Acc.1']  # index names; NaN
    named = IoUMetric(class_names=['bg', 'fg'], prefix='val')
    assert named.num_classes == 2
    named.process(None, [dict(pred_sem_seg=torch.tensor([[0, 1]]), gt_sem_seg=torch.tensor([[0, 0]]))])
    assert named.evaluate(1)['val/IoU.bg'] == 50.0

    with pytest.raises(ValueError, match='num_classes'):
        IoUMetric().process(None, [dict(pred_sem_seg=torch.zeros(2, 2, dtype=torch.long),
                                        gt_sem_seg=torch.zeros(2, 2, dtype=torch.long))])
    mismatch = IoUMetric(num_classes=3)
    mismatch.dataset_meta = dict(classes=['a', 'b'])
    with pytest.raises(ValueError, match='num_classes=3'):
        _ = mismatch.num_classes
    with pytest.raises(ValueError, match='class_names'):
        IoUMetric(num_classes=3, class_names=['a'])


def test_iou_metric_errors():
    metric = IoUMetric(num_classes=3)
    with pytest.raises(ValueError, match='gt_sem_seg'):
        metric.process(None, [dict(pred_sem_seg=torch.zeros(2, 2, dtype=torch.long))])
    with pytest.raises(ValueError, match=r'gt has values \[5\]'):
        metric.process(None, [dict(pred_sem_seg=torch.zeros(2, 2, dtype=torch.long),
                                   gt_sem_seg=torch.tensor([[0, 5], [1, 255]]))])
    with pytest.raises(ValueError, match='no results'):
        metric.compute_metrics([])
    dupes = IoUMetric(class_names=['a', 'a'])
    dupes.process(None, [dict(pred_sem_seg=torch.zeros(1, 2, dtype=torch.long),
                              gt_sem_seg=torch.zeros(1, 2, dtype=torch.long))])
    with pytest.raises(ValueError, match='unique'):
        dupes.compute_metrics(dupes.results)


def test_iou_metric_in_mmengine_evaluator():
    """The Runner's path: an Evaluator turns data elements into dicts of {'data': tensor}."""
    from mmengine.evaluator import Evaluator
    from mmengine.structures import BaseDataElement, PixelData

    samples = _samples(5, [21, 22, 23])
    elements = [BaseDataElement(pred_sem_seg=PixelData(data=s['pred_sem_seg'][None]),
                                gt_sem_seg=PixelData(data=s['gt_sem_seg'][None])) for s in samples]
    evaluator = Evaluator(IoUMetric())
    evaluator.dataset_meta = dict(classes=['a', 'b', 'c', 'd', 'e'])
    evaluator.process(elements[:2])
    evaluator.process(elements[2:])
    out = evaluator.evaluate(3)
    ref = naive_metrics(torch.cat([s['pred_sem_seg'].reshape(-1) for s in samples]),
                        torch.cat([s['gt_sem_seg'].reshape(-1) for s in samples]), 5)
    assert out['mIoU'] == pytest.approx(round(100 * ref['mIoU'], 2), abs=1e-9)
    assert same(out['IoU.d'], round(100 * ref['IoU'][3], 2))
