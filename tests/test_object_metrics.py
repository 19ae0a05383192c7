"""Objects by size: found / total per bucket and the size-restricted IoU, on hand-built scenes."""
import numpy as np
import pytest
from scipy import ndimage

from seg.evaluation.boundary import boundary_iou_from_counts
from seg.evaluation.objects import object_counts, object_size_counts, recall_from_counts, size_iou_counts

IGNORE = 255
# A 100 x 100 image: small < 10 pixels (0.1%), large >= 100 pixels (1%).
H = W = 100
SMALL, MEDIUM, LARGE = 0, 1, 2


def _scene():
    gt = np.zeros((H, W), np.int64)
    gt[5:7, 5:7] = 1  # A: class 1, 2 x 2 = 4 px: small
    gt[20:25, 20:25] = 1  # B: class 1, 5 x 5 = 25 px: medium
    gt[40:50, 40:52] = 1  # C: class 1, 10 x 12 = 120 px: large
    gt[70:73, 70:73] = 2  # D: class 2, 3 x 3 = 9 px: small
    gt[70:73, 73:76] = 1  # E: class 1, 3 x 3 = 9 px touching D: small, a separate object
    gt[90, 10] = 2  # F, G: class 2, two diagonal neighbours: one object of 2 px (8-connectivity)
    gt[91, 11] = 2
    pred = np.zeros_like(gt)
    pred[5:7, 5:7] = 1  # A found (4 / 4)
    pred[20:25, 20:22] = 1  # B: 10 of 25 ...
    pred[20:22, 22:24] = 1  # ... + 4 = 14 of 25: found (14 * 2 >= 25)
    pred[40:45, 40:52] = 1  # C: exactly 60 of 120: found (the half rule)
    pred[70:73, 70:73] = 1  # D predicted as class 1: not found; E missed (background): not found
    pred[90, 10] = 2  # F/G: 1 of 2 = exactly half: found
    return pred, gt


def test_known_components_sizes_and_found():
    pred, gt = _scene()
    counts = object_counts(pred, gt, num_classes=3)
    assert counts.shape == (3, 2, 3) and counts.dtype == np.int64
    # class 1: small A (found), E (not); medium B (found); large C (found).
    assert counts[:, :, 1].tolist() == [[1, 2], [1, 1], [1, 1]]
    # class 2: small D (not found) and F/G (found).
    assert counts[:, :, 2].tolist() == [[1, 2], [0, 0], [0, 0]]
    # class 0, the background: one large object (everything else), mostly predicted as 0.
    assert counts[:, :, 0].tolist() == [[0, 0], [0, 0], [1, 1]]
    recall = recall_from_counts(counts)
    assert recall.shape == (3, 3)
    assert recall[SMALL, 1] == 0.5 and recall[LARGE, 1] == 1.0 and np.isnan(recall[MEDIUM, 2])


def test_half_rule_is_inclusive():
    gt = np.zeros((10, 10), np.int64)
    gt[2:4, 2:6] = 1  # 8 px
    pred = np.zeros_like(gt)
    pred[2:4, 2:4] = 1  # exactly 4
    assert object_counts(pred, gt, 2, thresholds=(0.5, 0.9))[SMALL, :, 1].tolist() == [1, 1]
    pred[2, 2] = 0  # 3 of 8
    assert object_counts(pred, gt, 2, thresholds=(0.5, 0.9))[SMALL, :, 1].tolist() == [0, 1]


def test_object_cut_by_ignore_is_two_objects():
    gt = np.zeros((H, W), np.int64)
    gt[10:12, 10:31] = 1  # a 2 x 21 bar ...
    gt[:, 20] = IGNORE  # ... cut by an ignored column: two 2 x 10 objects of 20 px (medium)
    pred = np.zeros_like(gt)
    pred[10:12, 10:20] = 1  # the left half found
    pred[:, 20] = 1  # what is predicted on ignore counts for nothing
    counts = object_counts(pred, gt, 2)
    assert counts[:, :, 1].tolist() == [[0, 0], [1, 2], [0, 0]]
    # The image area counts the ignored pixels too: still 100 x 100, so 20 px is medium.
    sizes = size_iou_counts(pred, gt, 2)
    assert sizes[MEDIUM, :, 1].tolist() == [20, 40]


def test_touching_objects_of_different_classes_are_separate():
    gt = np.zeros((20, 20), np.int64)
    gt[5:10, 5:10] = 1
    gt[5:10, 10:15] = 2  # touches class 1 along a side
    gt[10:12, 15:17] = 1  # touches class 2 at a corner only: a second class-1 object
    counts = object_counts(gt, gt, 3, thresholds=(0.01, 0.05))
    # 20 x 20 = 400: small < 4 px, large >= 20 px.
    assert counts[:, 1, 1].tolist() == [0, 1, 1]  # 4 px (medium) and 25 px (large)
    assert counts[:, 1, 2].tolist() == [0, 0, 1]
    assert (counts[:, 0] == counts[:, 1]).all()


def test_size_iou_by_hand():
    pred, gt = _scene()
    pred = pred.copy()
    pred[5, 8] = 1  # a false positive of class 1 next to A (small bucket)
    pred[60, 46] = 1  # one below C (large bucket)
    sizes = size_iou_counts(pred, gt, 3)
    # class 1: small = A (4, all hit) + E (9, none) + the false positive at (5, 8), nearest to A, + D's 9
    # pixels predicted as class 1, nearest to E. medium = B: 14 of 25. large = C: 60 of 120 + the false
    # positive at (60, 46).
    assert sizes[:, :, 1].tolist() == [[4, 13 + 1 + 9], [14, 25], [60, 121]]
    # class 2: small = D (9 px, predicted 1) + F/G (2 px, 1 hit); no false positive of class 2.
    assert sizes[:, :, 2].tolist() == [[1, 11], [0, 0], [0, 0]]
    iou = boundary_iou_from_counts(sizes)  # (intersection, union) over [3, 2, C]
    assert iou.shape == (3, 3) and iou[SMALL, 1] == pytest.approx(4 / 23)


def test_false_positives_go_to_the_nearest_object():
    gt = np.zeros((40, 40), np.int64)
    gt[2:4, 2:4] = 1  # 4 px: small (< 0.01 * 1600 = 16)
    gt[20:30, 20:30] = 1  # 100 px: large (>= 0.05 * 1600 = 80)
    pred = gt.copy()
    pred[2:4, 6] = 1  # 2 px near the small one
    pred[15, 25] = 1  # 1 px near the large one
    pred[30:32, 20:30] = 1  # 20 px just below the large one
    gt[0, 39] = IGNORE
    pred[0, 39] = 1  # on an ignored pixel: no false positive
    sizes = size_iou_counts(pred, gt, 2, thresholds=(0.01, 0.05))
    assert sizes[:, :, 1].tolist() == [[4, 6], [0, 0], [100, 121]]


def test_without_ground_truth_false_positives_go_nowhere():
    gt = np.zeros((10, 10), np.int64)
    pred = gt.copy()
    pred[3:5, 3:5] = 1
    assert size_iou_counts(pred, gt, 2)[:, :, 1].sum() == 0
    assert object_counts(pred, gt, 2)[:, :, 1].sum() == 0
    assert np.isnan(recall_from_counts(object_counts(pred, gt, 2))[:, 1]).all()


def _reference_objects(pred, gt, num_classes, thresholds):
    """found / total and the size counts with scipy's labelling and a brute-force nearest object."""
    h, w = gt.shape
    obj = np.zeros((3, 2, num_classes), np.int64)
    size = np.zeros((3, 2, num_classes), np.int64)
    valid = gt != IGNORE
    for c in range(num_classes):
        comp, k = ndimage.label(gt == c, structure=np.ones((3, 3)))
        bucket_of = {}
        for i in range(1, k + 1):
            on = comp == i
            area, hits = int(on.sum()), int((on & (pred == c)).sum())
            b = 0 if area < thresholds[0] * h * w else (2 if area >= thresholds[1] * h * w else 1)
            bucket_of[i] = b
            obj[b, 0, c] += 2 * hits >= area
            obj[b, 1, c] += 1
            size[b, 0, c] += hits
            size[b, 1, c] += area
        if k == 0:
            continue
        gy, gx = np.nonzero(gt == c)
        for y, x in zip(*np.nonzero((pred == c) & valid & (gt != c))):
            d2 = (gy - y) ** 2 + (gx - x) ** 2
            nearest = {bucket_of[comp[gy[j], gx[j]]] for j in np.flatnonzero(d2 == d2.min())}
            assert len(nearest) == 1, 'the random scene has a tie between buckets'
            size[nearest.pop(), 1, c] += 1
    return obj, size


@pytest.mark.parametrize('seed', [0, 2, 3, 4, 5, 6])  # seed 1 has a false positive equally near two buckets
def test_matches_reference_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    h, w = 30, 40
    gt = np.zeros((h, w), np.int64)
    for _ in range(12):  # rectangles of random classes and sizes
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        gt[y:y + rng.integers(1, 9), x:x + rng.integers(1, 12)] = rng.integers(1, 4)
    gt[rng.random((h, w)) < 0.03] = IGNORE
    pred = gt.copy()
    pred[gt == IGNORE] = 0
    # False positives only next to objects, so the nearest object is never a close call.
    grown = ndimage.grey_dilation(np.where(gt == IGNORE, 0, gt), size=(3, 3))
    flip = (rng.random((h, w)) < 0.3) & (grown != gt) & (gt != IGNORE)
    pred[flip] = grown[flip]
    pred[rng.random((h, w)) < 0.2] = 4  # misses, as a class without ground truth (no object to be near)
    thresholds = (0.01, 0.04)  # small < 12 px, large >= 48 px
    obj_ref, size_ref = _reference_objects(pred, gt, 5, thresholds)
    obj, size = object_size_counts(pred, gt, 5, thresholds=thresholds)
    np.testing.assert_array_equal(obj, obj_ref)
    np.testing.assert_array_equal(size, size_ref)
    np.testing.assert_array_equal(object_counts(pred, gt, 5, thresholds=thresholds), obj_ref)
    np.testing.assert_array_equal(size_iou_counts(pred, gt, 5, thresholds=thresholds), size_ref)
    # The scene has objects of several sizes, missed pixels and false positives.
    area = np.bincount(gt[gt != IGNORE], minlength=5)  # [C] ground-truth pixels
    assert (obj[:, 1].sum(-1) > 0).sum() >= 2
    assert (size[:, 0].sum(0) < area).any() and (size[:, 1].sum(0) > area).any()


@pytest.mark.parametrize('seed', range(3))
def test_buckets_partition_the_plain_counts(seed):
    rng = np.random.default_rng(100 + seed)
    small = rng.integers(0, 5, size=(12, 16))
    gt = np.kron(small, np.ones((4, 4), np.int64))
    gt[rng.random(gt.shape) < 0.05] = IGNORE
    pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, 5, gt.shape), np.where(gt == IGNORE, 0, gt))
    sizes = size_iou_counts(pred, gt, 5).sum(axis=0)  # [2, C]
    valid = gt != IGNORE
    for c in range(5):
        g, p = gt == c, (pred == c) & valid
        assert g.any()
        assert sizes[0, c] == (g & p).sum() and sizes[1, c] == (g | p).sum()


def test_inputs():
    pred, gt = _scene()
    with pytest.raises(ValueError, match='thresholds'):
        object_counts(pred, gt, 3, thresholds=(0.1, 0.01))
    with pytest.raises(ValueError, match='gt has values'):
        object_counts(pred, gt, 2)
    with pytest.raises(ValueError, match=r'\[\.\.\., 3, 2, C\]'):
        recall_from_counts(np.zeros((2, 3)))
    # Recall of summed counts, and of a batch of sums.
    both = np.stack([object_counts(pred, gt, 3), object_counts(gt, gt, 3)])
    assert recall_from_counts(both).shape == (2, 3, 3)
    assert recall_from_counts(both.sum(0))[SMALL, 1] == pytest.approx(3 / 4)
