"""What attention attends to: same-class mass, baseline, entropy, distance, gates; by hand."""
import math

import numpy as np
import pytest
import torch

from seg.evaluation.attention_stats import attention_means, attention_row_stats, gate_class_gap, gate_stats

IGNORE = 255


def _labels():
    """4 x 5: class 0 on the left (8 px), class 1 on the right (9 px), class 2 once, 2 ignored pixels."""
    lab = np.array([[0, 0, 1, 1, 1],
                    [0, 0, 1, 1, 1],
                    [0, 0, IGNORE, 1, 1],
                    [0, 0, 2, IGNORE, 1]])
    return lab


VALID = 18


def _at(y, x, w=5):
    return y * w + x


def test_uniform_attention_gives_the_class_frequency_baseline():
    lab = _labels()
    queries = np.array([[0, 0], [1, 3], [3, 2], [2, 1]])  # classes 0, 1, 2, 0
    rows = np.full((4, 20), 1 / 20)  # uniform over every position, ignored ones included
    s = attention_row_stats(rows, queries, lab, num_classes=3)
    assert s['count'].tolist() == [2, 1, 1]
    expected = np.array([2 * 8 / VALID, 9 / VALID, 1 / VALID])  # summed over the rows of each class
    np.testing.assert_allclose(s['same_class_mass'], expected, rtol=1e-12)
    np.testing.assert_allclose(s['baseline'], expected, rtol=1e-12)
    np.testing.assert_allclose(s['entropy'], s['count'], rtol=1e-12)  # 1 per row
    # A uniform row: the mass by distance is the baseline by distance.
    np.testing.assert_allclose(s['mass_by_distance'], s['baseline_by_distance'], rtol=1e-12)
    np.testing.assert_allclose(s['same_class_mass_by_distance'], s['same_class_baseline_by_distance'], rtol=1e-12)
    np.testing.assert_allclose(s['mass_by_distance'].sum(1), s['count'])  # all within [0, inf)
    means = attention_means(s)
    np.testing.assert_allclose(means['same_class_mass'], [8 / VALID, 9 / VALID, 1 / VALID])
    np.testing.assert_allclose(means['entropy'], [1, 1, 1])
    assert means['all']['entropy'] == pytest.approx(1.0)


def test_attention_on_its_own_class_has_same_class_mass_one():
    lab = _labels()
    rng = np.random.default_rng(0)
    rows = np.zeros((2, 20))
    rows[0, (lab == 0).ravel()] = rng.random(8)  # query of class 0 attends to class 0 only
    rows[1, (lab == 1).ravel()] = rng.random(9)
    rows[1, (lab == IGNORE).ravel()] = 5.0  # weight on ignored pixels is dropped, the rest renormalised
    s = attention_row_stats(rows, np.array([[3, 0], [0, 4]]), lab, 3)
    np.testing.assert_allclose(s['same_class_mass'], [1, 1, 0])
    np.testing.assert_allclose(s['baseline'], [8 / VALID, 9 / VALID, 0])


def test_one_hot_row_entropy_zero_and_euclidean_distance():
    lab = _labels()
    rows = np.zeros((3, 20))
    rows[0, _at(3, 4)] = 1.0  # from (0, 0): distance 5 (3-4-5)
    rows[1, _at(0, 0)] = 1.0  # from (0, 0) to itself: 0
    rows[2, _at(0, 1)] = 1.0  # from (3, 4), class 1, to (0, 1), class 0: sqrt(9 + 9)
    q = np.array([[0, 0], [0, 0], [3, 4]])
    s = attention_row_stats(rows, q, lab, 3, distance_edges=(0, 1, 4.5, 5, 10))
    np.testing.assert_allclose(s['entropy'], [0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(s['distance'], [5 + 0, math.sqrt(18), 0])
    # Buckets [0, 1), [1, 4.5), [4.5, 5), [5, 10): 0 -> first, sqrt(18) = 4.24 -> second, 5 -> fourth.
    np.testing.assert_allclose(s['mass_by_distance'], [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(s['same_class_mass'], [1, 0, 0])  # (3, 4) is class 1, (0, 0) class 0
    np.testing.assert_allclose(s['same_class_mass_by_distance'][0], [1, 0, 0, 0])


def test_entropy_is_normalised_by_the_valid_positions():
    lab = _labels()
    row = np.zeros(20)
    row[(lab != IGNORE).ravel()] = 1.0  # uniform over the 18 valid positions only
    s = attention_row_stats(row, np.array([1, 1]), lab, 3)
    assert s['entropy'][0] == pytest.approx(1.0)
    row = np.zeros(20)
    row[[0, 1]] = 1.0  # two positions: log 2 / log 18
    s = attention_row_stats(row, np.array([1, 1]), lab, 3)
    assert s['entropy'][0] == pytest.approx(math.log(2) / math.log(VALID))


def test_skipped_rows_and_accumulation():
    lab = _labels()
    rows = np.zeros((3, 20))
    rows[0, 5] = 1.0
    rows[1, _at(2, 2)] = 1.0  # all its weight on an ignored pixel: left out
    rows[2, 0] = 1.0  # its query is an ignored pixel: left out
    s = attention_row_stats(rows, np.array([[0, 0], [0, 1], [2, 2]]), lab, 3)
    assert s['count'].tolist() == [1, 0, 0]
    # Chunking and splitting the rows change nothing; the sums add key by key.
    rng = np.random.default_rng(1)
    rows = rng.random((7, 20))
    q = np.stack(np.divmod(rng.integers(0, 20, 7), 5), axis=1)
    whole = attention_row_stats(rows, q, lab, 3)
    parts = [attention_row_stats(rows[i:i + 3], q[i:i + 3], lab, 3, chunk=2) for i in range(0, 7, 3)]
    for key in whole:
        if key != 'distance_edges':
            np.testing.assert_allclose(sum(p[key] for p in parts), whole[key], rtol=1e-12)
    # Torch inputs work too.
    t = attention_row_stats(torch.from_numpy(rows), torch.from_numpy(q), torch.from_numpy(lab), 3)
    np.testing.assert_allclose(t['distance'], whole['distance'])
    means = attention_means(whole)
    assert np.isnan(means['same_class_mass'][whole['count'] == 0]).all()


def test_bad_inputs():
    lab = _labels()
    with pytest.raises(ValueError, match='rows must be'):
        attention_row_stats(np.ones((1, 19)), np.array([[0, 0]]), lab, 3)
    with pytest.raises(ValueError, match='non-negative'):
        attention_row_stats(-np.ones((1, 20)), np.array([[0, 0]]), lab, 3)
    with pytest.raises(ValueError, match='outside'):
        attention_row_stats(np.ones((1, 20)), np.array([[4, 0]]), lab, 3)
    with pytest.raises(ValueError, match='labels has values'):
        attention_row_stats(np.ones((1, 20)), np.array([[0, 0]]), lab, 2)
    with pytest.raises(ValueError, match='distance_edges'):
        attention_row_stats(np.ones((1, 20)), np.array([[0, 0]]), lab, 3, distance_edges=(4, 0))


def test_gate_stats():
    channel = gate_stats(np.array([0.0, 1.0, 0.5, 0.5]))
    assert channel == {'mean': 0.5, 'std': pytest.approx(math.sqrt(0.125))}
    lab = _labels()
    gate = np.where(lab == 0, 0.2, np.where(lab == 1, 0.8, 0.5))
    gate[lab == IGNORE] = 100.0  # ignored pixels are in no class
    s = gate_stats(gate, lab, num_classes=4)
    np.testing.assert_allclose(s['class_mean'][:3], [0.2, 0.8, 0.5])
    assert np.isnan(s['class_mean'][3])
    assert s['class_count'].tolist() == [8, 9, 1, 0]
    assert s['class_gap'] == pytest.approx((0.6 + 0.3 + 0.3) / 3)
    assert s['std'] == pytest.approx(gate.std())
    assert math.isnan(gate_class_gap([0.3, np.nan]))
    # Accumulated over images: class sums and counts add.
    t = gate_stats(torch.from_numpy(gate), torch.from_numpy(lab), 4)
    total = (s['class_sum'] + t['class_sum']) / np.maximum(s['class_count'] + t['class_count'], 1)
    np.testing.assert_allclose(total[:3], [0.2, 0.8, 0.5])
    with pytest.raises(ValueError, match='spatial'):
        gate_stats(np.ones(4), np.zeros(4, np.int64), 2)
    with pytest.raises(ValueError, match='gate must be'):
        gate_stats(np.ones((1, 2, 3)))
