"""One knob per concept (issue 17): IoU from counts, the scalars.json reader, the machine description and
the timing of every benchmark each have one implementation, and it agrees with what the copies did."""
import json
import math
import types

import numpy as np
import pytest
import torch

from seg.analysis import measure
from seg.analysis.stats import iou_from_counts, miou_from_counts
from seg.evaluation.metrics import iou_from_areas, metrics_from_areas


# ----------------------------------------------------------------------------- IoU from counts
def _old_numpy_iou(c):  # seg.analysis.stats.iou_from_counts before issue 17
    c = np.asarray(c, dtype=np.float64)
    tp, gt, pred = c[..., 0, :], c[..., 1, :], c[..., 2, :]
    union = gt + pred - tp
    return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def _old_torch_iou(tp, gt, pred):  # seg.evaluation.metrics.metrics_from_areas before issue 17
    tp, gt, pred = (torch.as_tensor(t).to(torch.float64) for t in (tp, gt, pred))
    union = gt + pred - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float('nan')))


def test_one_iou_agrees_with_both_old_ones_on_counts():
    rng = np.random.default_rng(0)
    tp = rng.integers(0, 50, (4, 7, 1, 6))
    counts = np.concatenate([tp, tp + rng.integers(0, 9, tp.shape), tp + rng.integers(0, 9, tp.shape)], axis=2)
    counts[..., 2] = 0  # class 2 absent from ground truth and prediction: no IoU
    counts[0, 0, 0, 3] = counts[0, 0, 2, 3] = 0  # class 3 of one: predicted nowhere, in the gt: IoU 0
    new = iou_from_counts(counts)
    np.testing.assert_array_equal(new, _old_numpy_iou(counts))  # bit-identical, NaN in the same places
    assert np.isnan(new[..., 2]).all() and new[0, 0, 3] == 0.0
    for c in counts.reshape(-1, 3, 6):
        got = metrics_from_areas(*(torch.from_numpy(x) for x in c))
        np.testing.assert_array_equal(got['IoU'].numpy(), _old_torch_iou(*c).numpy())
        np.testing.assert_array_equal(got['IoU'].numpy(), iou_from_counts(c))
        assert got['mIoU'] == pytest.approx(miou_from_counts(c[None]), abs=1e-15)


def test_iou_where_the_old_ones_disagreed():
    # Fractional counts (e.g. averaged ones) with a union below 1: the old torch code divided by
    # max(union, 1); the IoU is tp / union.
    iou = iou_from_areas(torch.tensor([0.2]), torch.tensor([0.3]), torch.tensor([0.4]))
    assert iou.item() == pytest.approx(0.2 / 0.5)
    assert _old_torch_iou([0.2], [0.3], [0.4]).item() == pytest.approx(0.2)  # the old, wrong one
    assert math.isnan(iou_from_areas(0, 0, 0).item())


# ----------------------------------------------------------------------------- scalars.json
def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(x if isinstance(x, str) else json.dumps(x) for x in lines) + '\n')


def test_one_scalars_reader_for_curves_and_accuracy(tmp_path):
    from seg.analysis.results import read_run_metrics
    from seg.engine.logs import read_scalars
    from seg.visualization.plots import load_scalars

    work = tmp_path / 'work'
    first = work / '20260101_000000' / 'vis_data' / 'scalars.json'
    second = work / '20260102_000000' / 'vis_data' / 'scalars.json'
    _write(first, [dict(lr=0.1, loss=2.0, step=1), '', '{broken', '[1, 2]', dict(data_time=0.1, step=1),
                   dict(mIoU=10.0, aAcc=50.0, step=2), dict(mIoU=11.0, aAcc=51.0, step=2),  # later line wins
                   dict(lr=0.1, loss=1.5, step=3), dict(mIoU=20.0, aAcc=60.0, step=4)])
    _write(second, [dict(mIoU=21.0, aAcc=61.0, step=4), dict(lr=0.05, loss=1.0, iter=5),  # resumed, repeats 4
                    dict(mIoU=30.0, aAcc=70.0, step=6)])
    train, val = read_scalars(work)
    assert [(e.step, e.values['loss']) for e in train] == [(1, 2.0), (3, 1.5), (5, 1.0)]
    assert [(e.step, e.values['mIoU'], e.path) for e in val] == [
        (2, 11.0, str(first)), (4, 21.0, str(second)), (6, 30.0, str(second))]
    assert read_scalars(first)[1][-1].values['mIoU'] == 20.0  # a scalars.json path works too

    curves_train, curves_val = load_scalars(str(work))
    assert curves_train == [e.values for e in train] and curves_val == [e.values for e in val]
    got = read_run_metrics(work)
    assert got.miou == 30.0 and got.source == f'{second} (last validation, step 6)'
    (work / 'best_mIoU_iter_4.pth').write_bytes(b'')
    got = read_run_metrics(work)
    assert got.miou == 21.0 and got.source == f'{second} (best checkpoint, step 4)'

    with pytest.raises(FileNotFoundError, match='scalars.json'):
        read_scalars(tmp_path / 'empty')
    assert read_run_metrics(tmp_path) is None  # no run logs here: no metrics, no error


# ----------------------------------------------------------------------------- machine
KEYS = {'torch', 'python', 'cpu', 'cpu_flags', 'cpu_count', 'threads', 'device'}


def test_one_machine_description():
    from seg.analysis.op_bench import machine_info

    env = measure.environment('cpu')
    assert KEYS <= set(env) <= KEYS | {'gpu', 'load_average'}
    assert env['torch'] == torch.__version__ and env['threads'] == torch.get_num_threads() and env['cpu']
    assert set(env['cpu_flags']) <= set(measure.CPU_FLAGS)
    json.dumps(env)  # stored as it is in results.json and bench.json
    line = measure.describe_environment(env)
    assert env['cpu'] in line and f"{env['cpu_count']} CPUs" in line and f'torch {torch.__version__}' in line
    assert measure.describe_environment({'cpu': 'X', 'cores': 2}) == 'X, cores 2'  # an older record still prints

    info = machine_info()
    assert {k: v for k, v in info.items() if k != 'load_average'} \
        == {k: v for k, v in measure.environment('cuda' if torch.cuda.is_available() else 'cpu').items()
            if k != 'load_average'}


def test_reports_print_the_machine_the_same_way(tmp_path):
    from seg.analysis.comparison import Comparison
    from seg.analysis.op_bench import machine_info, write_results
    from seg.analysis.report import to_markdown

    info = machine_info()
    write_results([], info, 1.0, 'cmd', str(tmp_path / 'b.json'), str(tmp_path / 'b.md'))
    stored = json.loads((tmp_path / 'b.json').read_text())['machine']
    assert 'cpu_model' not in stored and stored['cpu'] == info['cpu']
    assert f'Machine: {measure.describe_environment(stored)};' in (tmp_path / 'b.md').read_text()
    result = Comparison(models=[], size=(8, 8), batch=1, device='cpu', threads=1, backbone='r', classes=[],
                        machine=measure.environment('cpu'))
    assert f'- Machine: {measure.describe_environment(result.machine)}\n' in to_markdown(result)


# ----------------------------------------------------------------------------- timing
@pytest.fixture
def fake_clock(monkeypatch):
    """measure.time_call's clock advancing 1 s per reading: every time that comes from time_call is 1.0."""
    ticks = iter(range(10 ** 6))
    monkeypatch.setattr(measure, 'time', types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))


def test_every_time_comes_from_time_call(fake_clock):
    from seg.analysis.model_bench import time_passes
    from seg.analysis.op_bench import bench_case
    from seg.analysis.profile import measure_pass

    timing = time_passes(lambda: torch.ones(8), 'cpu', 1, 2, 2, 1)
    assert timing.first_pass_s == 1.0 and timing.times == [[1.0, 1.0], [1.0, 1.0]]

    rows = bench_case('channel', (4, 4), 1, 'fwd', 8, torch.device('cpu'), 2, False, 2 ** 30)
    assert rows[0].times_s == [1.0, 1.0] and rows[0].base_times_s == [1.0, 1.0]

    model = torch.nn.Conv2d(3, 2, 1)
    model.loss = lambda inputs, samples: {'loss': model(inputs).mean()}
    x = torch.zeros(1, 3, 4, 4)
    assert measure_pass(model, x, [dict(gt_sem_seg=torch.zeros(4, 4))], True, 1, 3)[0] == 1000.0


def test_peak_memory_adds_what_is_present():
    weights = torch.zeros(1000)
    _, alone = measure.peak_memory(lambda: torch.ones(2 ** 16))
    _, with_present = measure.peak_memory(lambda: torch.ones(2 ** 16), present=[weights, weights[:10]])
    assert with_present - alone == 4000  # one storage, counted once


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_peak_memory_adds_what_is_present_on_cuda():
    weights = torch.zeros(1000, device='cuda')
    _, alone = measure.peak_memory(lambda: torch.ones(2 ** 16, device='cuda'), 'cuda')
    _, with_present = measure.peak_memory(lambda: torch.ones(2 ** 16, device='cuda'), 'cuda', present=[weights])
    assert with_present - alone == 4000
