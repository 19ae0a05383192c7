"""The paired bootstrap over seeds and validation images (seg.analysis.stats.paired_bootstrap): verdicts on
fixed inputs, the exact definition recomputed by loops, the weighted (matrix-product) image draws against
the indexing implementation it replaced, memory, and the report's "too few seeds"."""
import math
import tracemalloc
import warnings

import numpy as np
import pytest
from scipy.stats import t as student_t

from seg.analysis.stats import (
    DISTINGUISHABLE,
    MIN_SEEDS,
    NOT_DISTINGUISHABLE,
    SEED_LEVELS,
    TOO_FEW_SEEDS,
    Difference,
    bootstrap_paired_difference,
    iou_from_counts,
    miou_and_class_iou,
    miou_from_counts,
    paired_bootstrap,
    seeds_needed,
)


def paired_runs(shifts, image_sd=0.01, n=60, c=4, seed=0):
    """Per seed k, (N, 3, C) counts of a baseline (true-positive rate 0.7) and a model (0.7 + shifts[k]),
    each with its own per-image noise of sd ``image_sd`` shared by its seeds (the validation images are
    fixed), predictions as large as the ground truth: IoU = r / (2 - r), so the per-seed mIoU difference
    is about 1.2 * shifts[k]."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(200, 2000, (n, c))
    noise_model = rng.normal(0, image_sd, (n, c))
    noise_base = rng.normal(0, image_sd, (n, c))

    def run(rate):
        tp = np.round(gt * np.clip(rate, 0.01, 1.0)).astype(np.int64)
        return np.stack([tp, gt, gt], axis=1)

    model = [run(0.7 + s + noise_model) for s in shifts]
    base = [run(0.7 + noise_base) for _ in shifts]
    return model, base


# ------------------------------------------------------------------------------------ verdicts
@pytest.mark.parametrize('seed_level', SEED_LEVELS)
def test_per_seed_differences_of_opposite_signs_are_not_distinguishable(seed_level):
    model, base = paired_runs([0.03, -0.03, 0.035, -0.025])
    miou, per_class = bootstrap_paired_difference(model, base, replicates=500, seed_level=seed_level)
    assert sorted(np.sign(miou.per_seed)) == [-1, -1, 1, 1]
    # These runs' difference hardly depends on the images: the image-only interval excludes 0 (what
    # the report called "distinguishable" before); the models are not told apart.
    assert not miou.image_interval.contains_zero
    assert miou.contains_zero and miou.verdict == NOT_DISTINGUISHABLE and not miou.distinguishable
    assert all(d.verdict == NOT_DISTINGUISHABLE for d in per_class)


@pytest.mark.parametrize('seed_level', SEED_LEVELS)
def test_a_consistent_difference_larger_than_the_image_noise_is_distinguishable(seed_level):
    model, base = paired_runs([0.05, 0.055, 0.045, 0.052, 0.048])
    miou, per_class = bootstrap_paired_difference(model, base, replicates=500, seed_level=seed_level)
    assert miou.seeds == 5 and min(miou.per_seed) > 0.04
    assert miou.low > 0 and miou.verdict == DISTINGUISHABLE and miou.distinguishable
    assert all(d.verdict == DISTINGUISHABLE for d in per_class)
    assert miou.low <= miou.image_interval.low and miou.image_interval.high <= miou.high


@pytest.mark.parametrize('seed_level', SEED_LEVELS)
def test_the_interval_widens_as_the_seeds_disagree_more(seed_level):
    z = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    widths = []
    for spread in (0.0, 0.005, 0.01, 0.02, 0.04):
        model, base = paired_runs(0.03 + spread * z)
        miou, _ = bootstrap_paired_difference(model, base, replicates=500, seed_level=seed_level)
        widths.append(miou.high - miou.low)
        if spread == 0.0:  # seeds that agree exactly: only the images are left
            assert np.ptp(miou.per_seed) == 0.0
            assert (miou.low, miou.high) == (miou.image_interval.low, miou.image_interval.high)
    assert all(a < b for a, b in zip(widths, widths[1:])), widths
    assert widths[-1] > 3 * widths[0]


@pytest.mark.parametrize('seed_level', SEED_LEVELS)
@pytest.mark.parametrize('shifts', [[0.3, 0.3], [0.0, 0.0], [0.05, 0.051], [-0.0056, 0.0185], [0.2]],
                         ids=['huge', 'zero', 'consistent', 'issue-19', 'one-seed'])
def test_fewer_than_three_seeds_is_too_few_seeds_whatever_the_data(shifts, seed_level):
    model, base = paired_runs(shifts, image_sd=0.001)
    miou, per_class = bootstrap_paired_difference(model, base, replicates=200, seed_level=seed_level)
    assert MIN_SEEDS == 3 and miou.seeds == len(shifts) < MIN_SEEDS
    assert miou.verdict == TOO_FEW_SEEDS and not miou.distinguishable
    assert all(d.verdict == TOO_FEW_SEEDS for d in per_class)
    if len(shifts) == 1:  # one seed: no interval over the seeds at all
        assert math.isnan(miou.low) and miou.n == 0 and math.isfinite(miou.image_interval.low)
    # Three seeds and the same consistent data: a verdict.
    model, base = paired_runs([0.05, 0.051, 0.049], image_sd=0.001)
    assert bootstrap_paired_difference(model, base, 200, seed_level=seed_level)[0].verdict == DISTINGUISHABLE


# ---------------------------------------------------------------------- the exact definition
def _weights(draws, n):
    return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)


@pytest.mark.parametrize('seed_level', SEED_LEVELS)
def test_generic_statistic_on_other_counts_equals_the_definition_by_loops(seed_level):
    # Boundary-IoU-like counts (N, 2, C): (intersection, union) per class; the statistic pooled[0] / pooled[1]
    # per class and their mean, as :func:`paired_bootstrap` documents it, one replicate at a time.
    rng = np.random.default_rng(3)
    n, c, s, r, seed = 9, 3, 4, 150, 11
    union = rng.integers(10, 100, (s, 2, n, c))
    inter = (union * rng.uniform(0.3, 0.9, union.shape)).astype(np.int64)
    model, base = ([np.stack([inter[k, j], union[k, j]], axis=1) for k in range(s)] for j in (0, 1))

    def statistic(pooled):  # (B, 2, C) -> (B, 1 + C)
        ratio = pooled[:, 0] / pooled[:, 1]
        return np.concatenate([ratio.mean(axis=1, keepdims=True), ratio], axis=1)

    got = paired_bootstrap(model, base, statistic, replicates=r, seed=seed, seed_level=seed_level, chunk_bytes=1)
    assert len(got) == 1 + c and all(isinstance(d, Difference) for d in got)

    def f(x, w):  # statistic of the counts x (N, 2, C) drawn with multiplicities w
        return statistic(np.tensordot(w, x, axes=1)[None])[0]

    point = np.array([f(m, np.ones(n)) - f(b, np.ones(n)) for m, b in zip(model, base)])  # [S, P]
    draws = np.random.default_rng(seed).integers(0, n, size=(r, n))
    per_rep = np.array([[f(m, w) - f(b, w) for m, b in zip(model, base)] for w in _weights(draws, n)])  # [R, S, P]
    image = per_rep.mean(axis=1)
    seed_rng = np.random.default_rng((seed, 1))
    if seed_level == 'student':
        t = student_t.ppf((seed_rng.permutation(r) + seed_rng.random(r)) / r, s - 1)
        both = image + t[:, None] * point.std(axis=0, ddof=1) / math.sqrt(s)
    else:
        mult = _weights(seed_rng.integers(0, s, size=(r, s)), s)  # [R, S]
        both = np.einsum('rs,rsp->rp', mult, per_rep) / s
    for p, d in enumerate(got):
        assert d.mean == pytest.approx(point[:, p].mean(), abs=1e-12)
        np.testing.assert_allclose(d.per_seed, point[:, p], atol=1e-12)
        for iv, reps in ((d.image_interval, image[:, p]), (d, both[:, p])):
            np.testing.assert_allclose([iv.low, iv.high], np.quantile(reps, [0.025, 0.975]), atol=1e-12)
            assert iv.std == pytest.approx(reps.std(ddof=1), abs=1e-12) and iv.n == r


def indexing_bootstrap(model, baseline, replicates, confidence=0.95, seed=0):
    """The image-only bootstrap as seg.analysis.stats computed it before the seed level (HEAD): the drawn
    images indexed out of the [S, N, 3, C] counts into a [S, R, N, 3, C] array. Returns (mIoU, [class])
    as (mean, std, low, high, n)."""
    m = np.stack(model).astype(np.float64)
    b = np.stack(baseline).astype(np.float64)
    idx = np.random.default_rng(seed).integers(0, m.shape[1], size=(replicates, m.shape[1]))

    def metric(counts, take):
        summed = counts.sum(axis=1) if take is None else counts[:, take].sum(axis=2)
        iou = iou_from_counts(summed)
        return iou, _nanmean(iou, axis=-1)

    iou_m, miou_m = metric(m, None)
    iou_b, miou_b = metric(b, None)
    rep_iou_m, rep_miou_m = metric(m, idx)
    rep_iou_b, rep_miou_b = metric(b, idx)
    alpha = (1 - confidence) / 2

    def interval(point, reps):
        est = float(_nanmean(point, axis=0))
        per_rep = _nanmean(reps, axis=0)
        per_rep = per_rep[np.isfinite(per_rep)]
        low, high = np.quantile(per_rep, [alpha, 1 - alpha])
        return est, float(per_rep.std(ddof=1)), float(low), float(high), int(per_rep.size)

    return (interval(miou_m - miou_b, rep_miou_m - rep_miou_b),
            [interval(iou_m[:, c] - iou_b[:, c], rep_iou_m[:, :, c] - rep_iou_b[:, :, c])
             for c in range(m.shape[-1])])


def _nanmean(x, axis):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # an all-NaN slice stays NaN
        return np.nanmean(x, axis=axis)


@pytest.mark.parametrize('chunk_bytes', [1, 5000, 2 ** 26], ids=['one-replicate-chunks', 'small-chunks', 'one-chunk'])
def test_weighted_image_draws_give_the_indexing_implementations_image_only_intervals(chunk_bytes):
    rng = np.random.default_rng(5)
    n, c, s = 12, 5, 3

    def counts():
        gt = rng.integers(0, 40, (n, c))
        gt[:, 4] = 0
        gt[rng.integers(n), 4] = 7  # class 4 in one image only: absent (NaN) from many draws
        pred = np.clip(gt + rng.integers(-5, 6, (n, c)), 0, None)
        pred[:, 4] = gt[:, 4]
        tp = np.minimum(gt, pred) - rng.integers(0, 3, (n, c))
        return np.stack([tp.clip(0), gt, pred], axis=1)

    model = [counts() for _ in range(s)]
    base = [counts() for _ in range(s)]
    want_miou, want_classes = indexing_bootstrap(model, base, 300, seed=9)
    got_miou, *got_classes = paired_bootstrap(model, base, miou_and_class_iou, replicates=300, seed=9,
                                              chunk_bytes=chunk_bytes)
    for want, got in [(want_miou, got_miou)] + list(zip(want_classes, got_classes)):
        iv = got.image_interval
        np.testing.assert_allclose((iv.mean, iv.std, iv.low, iv.high), want[:4], rtol=0, atol=1e-12)
        assert iv.n == want[4]
    assert got_classes[4].image_interval.n < 300  # the draws without class 4 are left out, as before
    # bootstrap_paired_difference is this statistic.
    same, _ = bootstrap_paired_difference(model, base, 300, seed=9)
    assert (same.image_interval.low, same.image_interval.high) == (got_miou.image_interval.low,
                                                                   got_miou.image_interval.high)
    assert same.mean == pytest.approx(np.mean([miou_from_counts(a) - miou_from_counts(b)
                                               for a, b in zip(model, base)]), abs=1e-12)


def test_no_resampled_counts_are_materialised():
    # 1000 images, 19 classes, 3 seeds, 300 replicates: the indexing implementation held one
    # [3, 300, 1000, 3, 19] float64 array per model (410 MB); here the counts [N, 2 * 3 * 57] and chunks.
    rng = np.random.default_rng(0)
    n, c, s, r = 1000, 19, 3, 300
    gt = rng.integers(0, 5000, (n, c))
    runs = [np.stack([gt // (2 + k % 3), gt, gt], axis=1) for k in range(2 * s)]
    tracemalloc.start()
    try:
        miou, _ = bootstrap_paired_difference(runs[:s], runs[s:], replicates=r)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert miou.n == r and math.isfinite(miou.low)
    indexing = s * r * n * 3 * c * 8
    assert peak < 100 * 2 ** 20 and peak < indexing / 4, (peak, indexing)


def test_bad_inputs_are_refused():
    model, base = paired_runs([0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match='seed_level'):
        bootstrap_paired_difference(model, base, 10, seed_level='bayes')
    with pytest.raises(ValueError, match='same number'):
        paired_bootstrap(model, base[:2], miou_and_class_iou)
    with pytest.raises(ValueError, match=r'\(N, \.\.\.\)'):
        paired_bootstrap(model, [b[:-1] for b in base], miou_and_class_iou)
    with pytest.raises(ValueError, match='statistic'):
        paired_bootstrap(model, base, lambda pooled: pooled.reshape(-1), replicates=10)


# ---------------------------------------------------------------------------- seeds needed
def test_seeds_needed_follows_the_t_rule():
    def by_hand(ratio):  # smallest n with sqrt(n) * ratio >= t(0.975, n-1) + t(0.8, n-1)
        n = 2
        while math.sqrt(n) * ratio < student_t.ppf(0.975, n - 1) + student_t.ppf(0.8, n - 1):
            n += 1
        return n

    for spread, diff in ((1.0, 1.0), (0.5, 1.0), (2.04, 0.78), (1.0, 0.25)):
        assert seeds_needed(spread, diff) == by_hand(diff / spread)
    assert seeds_needed(0.0, 1.0) == 2
    assert seeds_needed(1.0, 1.0) == 10  # spread equal to the difference: ten seeds
    # Large n: about 7.85 (spread / difference)^2, the normal approximation.
    assert seeds_needed(1.0, 0.1) == pytest.approx(785, rel=0.02)
    with pytest.raises(ValueError):
        seeds_needed(1.0, 0.0)


# --------------------------------------------------------------------------------- report
def _comparison(seeds):
    from seg.analysis.comparison import Comparison, ModelResult, Run, compare_to_baseline
    from seg.analysis.profile import CostReport
    from seg.analysis.results import RunMetrics
    from seg.analysis.specs import ModelSpec

    model, base = paired_runs([0.05, 0.052, 0.048, 0.051][:seeds])
    classes = [f'c{i}' for i in range(4)]

    def result(label, counts):
        runs = [Run(seed=k, work_dir=None, metrics=RunMetrics(100 * miou_from_counts(x), 0.0, 0.0, {}, 'test'),
                    counts=x, images=[f'{i}.png' for i in range(len(x))]) for k, x in enumerate(counts)]
        return ModelResult(ModelSpec(label, 'head', label), CostReport(1, 1, 1, 1, (8, 8)), runs)

    models = [result('fcn', base), result('danet', model)]
    assert compare_to_baseline(models, classes, replicates=200) == []
    return Comparison(models, (8, 8), 1, 'cpu', 1, 'demo', classes=classes, bootstrap=200)


@pytest.mark.parametrize('seeds', [2, 4])
def test_report_prints_the_verdict_and_names_the_image_only_interval(seeds):
    from seg.analysis.report import to_csv, to_json, to_markdown

    result = _comparison(seeds)
    d = result.models[1].difference
    assert isinstance(d, Difference) and d.seeds == seeds
    assert d.mean == pytest.approx(np.mean(d.per_seed)) and abs(d.mean) > 1  # in points
    text = to_markdown(result)
    verdict = TOO_FEW_SEEDS if seeds < 3 else DISTINGUISHABLE
    assert d.verdict == verdict
    assert 'image-only 95% CI (these runs)' in text and f'| danet | {seeds} |' in text
    assert (f'| {TOO_FEW_SEEDS} |' in text) == (seeds < 3)  # the verdict column
    assert (f'| {DISTINGUISHABLE} |' in text) == (seeds >= 3)
    assert f'with fewer than {MIN_SEEDS} paired seeds no difference is called distinguishable' in text
    data = to_json(result)['models'][1]
    assert data['verdict'] == verdict and data['distinguishable'] == (seeds >= 3)
    assert set(data['difference']) == {'mean', 'std', 'low', 'high', 'n'}
    assert len(data['difference_detail']['per_seed']) == seeds
    assert data['difference_detail']['image_only']['low'] == pytest.approx(d.image_interval.low)
    assert set(data['class_difference_detail']) == set(result.classes)
    row = to_csv(result).splitlines()[2]
    assert verdict in row


def _hand_comparison(seeds, class_counts, size_counts=None, attention=None, images=4):
    """Two models (``fcn``, ``danet``), ``seeds`` runs each, every image of a run with the same counts: then
    the pooled ratios do not depend on the draw of the images, and a difference equal on every seed has the
    interval [d, d]. ``class_counts[label]`` (3, C); ``size_counts[label][k]`` (3, 2, C) of seed k;
    ``attention[label][k]`` the run's attention.json."""
    from seg.analysis.comparison import Comparison, ModelResult, Run, compare_regions, compare_to_baseline
    from seg.analysis.profile import CostReport
    from seg.analysis.results import RunMetrics
    from seg.analysis.specs import ModelSpec

    classes = [f'c{i}' for i in range(np.shape(class_counts['fcn'])[-1])]

    def result(label):
        runs = []
        for k in range(seeds):
            counts = np.repeat(np.asarray(class_counts[label])[None], images, axis=0)
            run = Run(seed=k, work_dir=None, metrics=RunMetrics(100 * miou_from_counts(counts), 0.0, 0.0, {}, 'test'),
                      counts=counts, images=[f'{i}.png' for i in range(images)])
            if size_counts:
                run.region_counts['size_iou'] = np.repeat(np.asarray(size_counts[label][k])[None], images, 0).tolist()
            if attention:
                run.attention = attention[label][k]
            runs.append(run)
        return ModelResult(ModelSpec(label, 'head', label), CostReport(1, 1, 1, 1, (8, 8)), runs)

    models = [result('fcn'), result('danet')]
    assert compare_to_baseline(models, classes, replicates=200) == []
    compare_regions(models, replicates=200)
    return Comparison(models, (8, 8), 1, 'cpu', 1, 'demo', classes=classes, bootstrap=200)


# class c0: IoU 5 / (10 + 10 - 5) = 33.33 % for fcn, 6 / 14 = 42.86 % for danet (+9.52); class c1: 8 / 12 for both
CLASS_COUNTS = {'fcn': [[5, 8], [10, 10], [10, 10]], 'danet': [[6, 8], [10, 10], [10, 10]]}


@pytest.mark.parametrize('seeds', [2, 3])
def test_per_class_differences_are_a_compact_grid_with_the_undistinguishable_cells_marked(seeds):
    from seg.analysis.report import to_json, to_markdown

    result = _hand_comparison(seeds, CLASS_COUNTS)
    text = to_markdown(result)
    # +9.52 on every seed and every image draw: distinguishable from 3 seeds on, "too few seeds" with 2;
    # c1 differs by exactly 0: not distinguishable. Marked by parentheses, the intervals left to results.json.
    row = '| danet | +9.52 | (+0.00) |' if seeds >= 3 else '| danet | (+9.52) | (+0.00) |'
    assert row in text
    assert 'Per-class IoU difference from `fcn`' in text and 'in parentheses: not distinguishable' in text
    assert '[+9.52, +9.52]' not in text.split('Per-class IoU difference')[1]  # compact: no interval in the grid
    c0 = to_json(result)['models'][1]['class_difference']['c0']
    assert (c0['mean'], c0['low'], c0['high']) == (pytest.approx(100 * (6 / 14 - 5 / 15)),) * 3


def test_iou_by_object_size_is_a_table_with_seeds_and_paired_differences():
    from seg.analysis.report import to_json, to_markdown

    def sizes(a):  # [3 buckets, (intersection, union), 2 classes]
        return [[[a, 1], [10, 2]],  # small: c0 a / 10, c1 1 / 2
                [[3, 0], [4, 0]],  # medium: c0 3 / 4, c1 without union (left out of the mean)
                [[1, 0], [1, 0]]]  # large: c0 1 / 1

    # small: fcn (a / 10 + 0.5) / 2 with a = 2, 4, 6 over the seeds: 35, 45, 55 %; danet a = 4, 6, 8: 45, 55, 65 %
    size_counts = {'fcn': [sizes(a) for a in (2, 4, 6)], 'danet': [sizes(a) for a in (4, 6, 8)]}
    result = _hand_comparison(3, CLASS_COUNTS, size_counts)
    text = to_markdown(result)
    assert '| model | small (mean ± std) | small vs baseline [95% CI] | medium (mean ± std) |' in text
    assert '| fcn | 45.00 ± 10.00 | baseline | 75.00 ± 0.00 | baseline | 100.00 ± 0.00 | baseline |' in text
    assert ('| danet | 55.00 ± 10.00 | +10.00 [+10.00, +10.00] | 75.00 ± 0.00 | +0.00 [+0.00, +0.00] not '
            'distinguishable | 100.00 ± 0.00 | +0.00 [+0.00, +0.00] not distinguishable |') in text
    data = to_json(result)['models'][1]
    assert data['region_summary']['sizeIoU.small']['mean'] == pytest.approx(55.0)
    assert data['region_difference']['sizeIoU.small']['mean'] == pytest.approx(10.0)
    assert data['region_difference']['sizeIoU.small']['verdict'] == DISTINGUISHABLE
    assert data['region_difference']['sizeIoU.medium']['verdict'] == NOT_DISTINGUISHABLE


def test_attention_by_distance_is_a_table_over_the_seeds_and_in_results_json():
    import json

    from seg.analysis.report import to_json, to_markdown

    def attention(k):  # seed k; buckets 0-4, 4-16, 16-64, >= 64 feature pixels
        return {'decode_head.context/composed': dict(
            same_class_mass=0.5, baseline=0.25, entropy=0.9, distance=7.0,
            mass_by_distance=[0.5 + 0.1 * k, 0.3 - 0.1 * k, 0.2, 0.0],
            baseline_by_distance=[0.01, 0.09, 0.6, 0.3],
            same_class_mass_by_distance=[0.4, 0.1 + 0.05 * k, 0.05, 0.0],
            same_class_baseline_by_distance=[0.005, 0.02, 0.15, 0.075],
            distance_edges=[0.0, 4.0, 16.0, 64.0, None])}

    result = _hand_comparison(3, CLASS_COUNTS, attention={'fcn': [{}] * 3, 'danet': [attention(k) for k in range(3)]})
    text = to_markdown(result)
    assert ('| model | module / map | mass 0-4 px | mass 4-16 px | mass 16-64 px | mass >= 64 px | same-class 0-4 px |'
            ' same-class 4-16 px | same-class 16-64 px | same-class >= 64 px |') in text
    # mass 0-4 px over the seeds: 0.5, 0.6, 0.7 -> 0.600 ± 0.100; same-class 4-16 px: 0.1, 0.15, 0.2 -> 0.150 ± 0.050
    assert ('| danet | `decode_head.context/composed` | 0.600 ± 0.100 (0.010) | 0.200 ± 0.100 (0.090) | '
            '0.200 ± 0.000 (0.600) | 0.000 ± 0.000 (0.300) | 0.400 ± 0.000 (0.005) | 0.150 ± 0.050 (0.020) | '
            '0.050 ± 0.000 (0.150) | 0.000 ± 0.000 (0.075) |') in text
    # the scalar statistics stay in the table of means, without the lists
    summary = result.models[1].attention_summary['decode_head.context/composed']
    assert set(summary) == {'same_class_mass', 'baseline', 'entropy', 'distance'}
    data = json.loads(json.dumps(to_json(result), allow_nan=False))  # plain JSON: the open edge is null
    by_distance = data['models'][1]['attention_by_distance']['decode_head.context/composed']
    assert by_distance['distance_edges'] == [0.0, 4.0, 16.0, 64.0, None] and by_distance['runs'] == 3
    assert by_distance['mass_by_distance'][0]['mean'] == pytest.approx(0.6)
    assert by_distance['mass_by_distance'][0]['std'] == pytest.approx(0.1)
    assert by_distance['same_class_baseline_by_distance'][3]['mean'] == pytest.approx(0.075)
    assert data['models'][0]['attention_by_distance'] == {}
