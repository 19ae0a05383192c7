"""Boundary IoU and trimap accuracy: hand-computed fixtures and a brute-force per-pixel reference."""
import numpy as np
import pytest
import torch

from seg.evaluation.boundary import (
    as_area_counts,
    boundary_counts,
    boundary_iou_from_counts,
    default_boundary_distance,
    trimap_counts,
)

IGNORE = 255


# ---------------------------------------------------------------- brute-force references (pure loops)

def _inner_band_reference(mask: np.ndarray, d: int) -> np.ndarray:
    """Pixels of ``mask`` whose nearest pixel outside it (outside the image included) is at chessboard
    distance <= d, by looking at every pixel."""
    h, w = mask.shape
    band = np.zeros_like(mask, dtype=bool)
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            nearest = min(y + 1, x + 1, h - y, w - x)  # the nearest pixel outside the image
            for yy in range(h):
                for xx in range(w):
                    if not mask[yy, xx]:
                        nearest = min(nearest, max(abs(yy - y), abs(xx - x)))
            band[y, x] = nearest <= d
    return band


def _boundary_counts_reference(pred, gt, num_classes, d, ignore_index=IGNORE):
    valid = gt != ignore_index
    out = np.zeros((2, num_classes), np.int64)
    for c in range(num_classes):
        g = _inner_band_reference(gt == c, d)
        p = _inner_band_reference((pred == c) & valid, d)
        out[0, c] = int((g & p).sum())
        out[1, c] = int((g | p).sum())
    return out


def _trimap_reference(pred, gt, widths, ignore_index=IGNORE):
    h, w = gt.shape
    out = np.zeros((len(widths), 2), np.int64)
    for i, width in enumerate(widths):
        for y in range(h):
            for x in range(w):
                if gt[y, x] == ignore_index:
                    continue
                near = any(gt[yy, xx] != gt[y, x]
                           for yy in range(max(0, y - width), min(h, y + width + 1))
                           for xx in range(max(0, x - width), min(w, x + width + 1)))
                if near:
                    out[i, 1] += 1
                    out[i, 0] += int(pred[y, x] == gt[y, x])
    return out


def _random_maps(rng, h, w, num_classes, ignore_share=0.1, blocky=True):
    if blocky:  # regions rather than salt and pepper, so bands are not the whole mask
        small = rng.integers(0, num_classes, size=(h // 3 + 1, w // 3 + 1))
        gt = np.kron(small, np.ones((3, 3), np.int64))[:h, :w]
        pred = np.where(rng.random((h, w)) < 0.25, rng.integers(0, num_classes, (h, w)), gt)
    else:
        gt = rng.integers(0, num_classes, size=(h, w))
        pred = rng.integers(0, num_classes, size=(h, w))
    gt = np.where(rng.random((h, w)) < ignore_share, IGNORE, gt)
    return pred, gt


# ---------------------------------------------------------------- hand-computed fixtures

def _squares():
    """12 x 12: ground truth class 1 is the 6 x 6 square rows / cols 3..8, prediction the 4 x 4 square 4..7."""
    gt = np.zeros((12, 12), np.int64)
    gt[3:9, 3:9] = 1
    pred = np.zeros((12, 12), np.int64)
    pred[4:8, 4:8] = 1
    return pred, gt


def test_square_inside_square_d1():
    pred, gt = _squares()
    counts = boundary_counts(pred, gt, num_classes=3, d=1)
    # class 1: G_1 is the 6 x 6 ring (36 - 16 = 20), P_1 the 4 x 4 ring (16 - 4 = 12); they do not meet.
    # class 0: G_1 = image border ring (44) + ring around the 6 x 6 square (8 x 8 - 36 = 28) = 72;
    #          P_1 = border ring (44) + ring around the 4 x 4 square (6 x 6 - 16 = 20) = 64; they share the border.
    # class 2: absent from both.
    np.testing.assert_array_equal(counts, [[44, 0, 0], [72 + 64 - 44, 32, 0]])
    assert counts.dtype == np.int64 and counts.shape == (2, 3)
    iou = boundary_iou_from_counts(counts)
    assert iou[0] == pytest.approx(44 / 92) and iou[1] == 0.0 and np.isnan(iou[2])


def test_square_inside_square_d2():
    pred, gt = _squares()
    counts = boundary_counts(pred, gt, num_classes=2, d=2)
    # class 1: G_2 = 36 - 2 x 2 core = 32; P_2 = the whole 4 x 4 (16); P_2 inside G_2 except the core: 12.
    assert counts[:, 1].tolist() == [12, 32 + 16 - 12]
    assert boundary_iou_from_counts(counts)[1] == pytest.approx(1 / 3)


def test_one_pixel_line():
    gt = np.zeros((11, 12), np.int64)
    gt[5, 2:10] = 1  # a horizontal line of 8 pixels: all of it is its own band
    same = boundary_counts(gt, gt, num_classes=2, d=1)
    assert same[:, 1].tolist() == [8, 8]
    shifted = np.zeros_like(gt)
    shifted[6, 2:10] = 1
    assert boundary_counts(shifted, gt, num_classes=2, d=1)[:, 1].tolist() == [0, 16]
    thick = np.zeros_like(gt)
    thick[4:7, 2:10] = 1  # 3 x 8 block: band = 24 - 6 interior pixels (row 5, cols 3..8) = 18
    # The line's pixels in the thick band: only its two ends (row 5, cols 2 and 9).
    counts = boundary_counts(thick, gt, num_classes=2, d=1)
    assert counts[:, 1].tolist() == [2, 8 + 18 - 2]
    assert boundary_iou_from_counts(counts)[1] == pytest.approx(1 / 12)


def test_empty_class_is_nan_and_counts_add_over_images():
    pred, gt = _squares()
    a = boundary_counts(pred, gt, num_classes=4, d=1)
    b = boundary_counts(gt, gt, num_classes=4, d=1)
    assert a[:, 2:].sum() == 0
    iou = boundary_iou_from_counts(np.stack([a, b]).sum(0))
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert iou[1] == pytest.approx((0 + 20) / (32 + 20))
    # A batch of sums keeps its leading axes.
    assert boundary_iou_from_counts(np.stack([a, b])).shape == (2, 4)


def test_ignore_pixels_are_out_of_both_masks():
    pred, gt = _squares()
    gt = gt.copy()
    gt[:, 10:] = IGNORE  # an ignored strip on the right
    counts = boundary_counts(pred, gt, num_classes=2, d=1)
    # What pred says on ignored pixels never matters.
    pred2 = pred.copy()
    pred2[:, 10:] = 1
    np.testing.assert_array_equal(boundary_counts(pred2, gt, num_classes=2, d=1), counts)
    # Pixels predicted on ignore may even be out of range.
    pred2[:, 10:] = 77
    np.testing.assert_array_equal(boundary_counts(pred2, gt, num_classes=2, d=1), counts)
    # The ignored strip's edge is a contour of class 0 (column 9) in both masks.
    np.testing.assert_array_equal(counts, _boundary_counts_reference(pred, gt, 2, 1))


def test_whole_image_band_is_plain_iou():
    rng = np.random.default_rng(0)
    for h, w in ((9, 13), (16, 7)):
        pred, gt = _random_maps(rng, h, w, 4)
        counts = boundary_counts(pred, gt, num_classes=4, d=max(h, w))
        valid = gt != IGNORE
        for c in range(4):
            g, p = gt == c, (pred == c) & valid
            assert counts[0, c] == (g & p).sum() and counts[1, c] == (g | p).sum()


@pytest.mark.parametrize('d', [1, 2, 3, 5])
@pytest.mark.parametrize('blocky', [True, False])
def test_matches_brute_force_reference(d, blocky):
    rng = np.random.default_rng(d * 10 + blocky)
    for _ in range(3):
        pred, gt = _random_maps(rng, 10, 13, 3, blocky=blocky)
        np.testing.assert_array_equal(boundary_counts(pred, gt, 3, d=d), _boundary_counts_reference(pred, gt, 3, d))


def test_default_distance_and_inputs():
    assert default_boundary_distance(1024, 2048) == 46  # 0.02 * 2289.7
    assert default_boundary_distance(10, 10) == 1  # round(0.28) = 0 -> at least 1
    assert default_boundary_distance(100, 100, 0.05) == 7
    pred, gt = _squares()
    # Default d on a 12 x 12 image is 1; torch tensors are accepted.
    np.testing.assert_array_equal(boundary_counts(torch.from_numpy(pred), torch.from_numpy(gt), 2),
                                  boundary_counts(pred, gt, 2, d=1))
    # Many classes (uint16 label maps) give the same counts.
    np.testing.assert_array_equal(boundary_counts(pred, gt, 300, d=1)[:, :2], boundary_counts(pred, gt, 2, d=1))
    with pytest.raises(ValueError, match='gt has values'):
        boundary_counts(pred, gt + 5, 2)
    with pytest.raises(ValueError, match='pred has values'):
        boundary_counts(pred + 2, gt, 2)
    with pytest.raises(ValueError, match='same shape|one shape'):
        boundary_counts(pred[:5], gt, 2)
    with pytest.raises(ValueError, match='integer'):
        boundary_counts(pred.astype(float), gt, 2)
    with pytest.raises(ValueError, match='d must be'):
        boundary_counts(pred, gt, 2, d=0)


def test_as_area_counts_gives_the_ratio_to_the_bootstrap():
    from seg.analysis.stats import iou_from_counts

    counts = np.array([[[3, 0, 2], [4, 0, 8]], [[1, 0, 0], [2, 0, 5]]])  # [N=2, 2, C=3]
    areas = as_area_counts(counts)
    assert areas.shape == (2, 3, 3)
    np.testing.assert_allclose(iou_from_counts(areas.sum(0)), boundary_iou_from_counts(counts.sum(0)))


# ---------------------------------------------------------------- trimap

def test_trimap_two_halves():
    gt = np.zeros((6, 8), np.int64)
    gt[:, 4:] = 1
    pred = np.zeros_like(gt)  # right on the left half, wrong on the right half
    counts = trimap_counts(pred, gt, widths=(1, 2, 4))
    # w = 1: columns 3 and 4; w = 2: columns 2..5; w = 4: the whole image. The image border is no boundary.
    np.testing.assert_array_equal(counts, [[6, 12], [12, 24], [24, 48]])
    assert trimap_counts(gt, gt, widths=(1,)).tolist() == [[12, 12]]
    assert trimap_counts(pred, pred, widths=(1, 2)).tolist() == [[0, 0], [0, 0]]  # one label: no boundary


def test_trimap_ignore_edge_counts_but_ignored_pixels_do_not():
    gt = np.zeros((7, 7), np.int64)
    gt[3, 3] = IGNORE
    counts = trimap_counts(gt, gt, widths=(1, 2))
    assert counts.tolist() == [[8, 8], [24, 24]]


@pytest.mark.parametrize('seed', range(4))
def test_trimap_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pred, gt = _random_maps(rng, 11, 14, 4, blocky=seed % 2 == 0)
    widths = (1, 2, 3, 8)
    np.testing.assert_array_equal(trimap_counts(pred, gt, widths), _trimap_reference(pred, gt, widths))
    # Labels beyond uint8 and negative ones are compared as they are.
    np.testing.assert_array_equal(trimap_counts(pred * 1000 - 3, np.where(gt == IGNORE, IGNORE, gt * 1000 - 3),
                                                widths), _trimap_reference(pred, gt, widths))


def test_per_image_counts_go_through_the_paired_bootstrap_unchanged():
    from seg.analysis.stats import bootstrap_paired_difference

    rng = np.random.default_rng(5)
    images = [_random_maps(rng, 12, 15, 3) for _ in range(6)]
    runs = {}
    for name, noise in (('model', 0.05), ('baseline', 0.3)):
        runs[name] = []
        for seed in range(2):
            r = np.random.default_rng(seed)
            per_image = []
            for _, gt in images:
                pred = np.where(r.random(gt.shape) < noise, r.integers(0, 3, gt.shape), np.where(gt == IGNORE, 0, gt))
                per_image.append(boundary_counts(pred, gt, 3, d=1))
            runs[name].append(np.stack(per_image))  # [N, 2, C]
    miou, per_class = bootstrap_paired_difference([as_area_counts(c) for c in runs['model']],
                                                  [as_area_counts(c) for c in runs['baseline']], replicates=50)
    expected = np.mean([boundary_iou_from_counts(m.sum(0)) - boundary_iou_from_counts(b.sum(0))
                        for m, b in zip(runs['model'], runs['baseline'])], axis=0)  # [C]
    np.testing.assert_allclose([d.mean for d in per_class], expected, rtol=1e-12)
    assert miou.mean == pytest.approx(expected.mean())
