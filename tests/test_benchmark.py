"""tools/benchmark.py: eval and train passes timed with or without data and weights, the flags
outside scripts rely on, the last line ``median_s=``, and the accuracy guard's arithmetic."""
import copy
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from seg.analysis.measure import present_bytes
from seg.analysis.model_bench import GUARD_AGREEMENT, PassTiming, agreement, format_timing, time_passes
from seg.apis.benchmark import BenchmarkSettings, accuracy_guard, run_benchmark

from .conftest import ROOT

DEMO = os.path.join(ROOT, 'configs', 'demo_ccnet.py')
TINY = {'model.backbone.channels': (8, 8, 16, 16), 'model.decode_head.in_channels': 16,
        'model.decode_head.channels': 8, 'model.auxiliary_head.in_channels': 16,
        'model.auxiliary_head.channels': 8}


def settings(**kw) -> BenchmarkSettings:
    base = dict(config=DEMO, shape=(32, 64), batch_size=2, repeat=2, iters=2, warmup=1, cfg_options=TINY)
    return BenchmarkSettings(**{**base, **kw})


@pytest.mark.parametrize('mode', ['eval', 'train'])
@pytest.mark.parametrize('precision', ['fp32', 'auto'])
def test_benchmark_times_every_repeat_and_ends_with_the_median(mode, precision):
    timing, guard, report = run_benchmark(settings(mode=mode, precision=precision))
    assert guard is None
    assert [len(t) for t in timing.times] == [2, 2] and timing.images_per_pass == 2
    assert all(f > 0 for f in timing.fps) and timing.peak_bytes > 0 and timing.first_pass_s > 0
    lines = report.splitlines()
    assert lines[-1] == f'median_s={timing.median_s:.6f}'
    assert sum(1 for line in lines if re.match(r'\| [12] \| 2 \|', line)) == 2
    assert f'mode {mode}, batch 2, input 32x64, random weights' in report
    assert ('precision fp32' in report) if precision == 'fp32' else ('precision ' in report)


def test_train_pass_updates_the_weights():
    """A train pass is a whole optimizer step, not only forward + backward."""
    from seg.apis import benchmark as bench

    seen = {}
    original = bench._optim_wrapper

    def spy(model, cfg, precision):
        seen['model'] = model
        seen['before'] = next(model.decode_head.parameters()).detach().clone()
        return original(model, cfg, precision)

    bench._optim_wrapper = spy
    try:
        run_benchmark(settings(mode='train', precision='fp32', repeat=1, iters=1, warmup=0))
    finally:
        bench._optim_wrapper = original
    assert not torch.equal(seen['before'], next(seen['model'].decode_head.parameters()).detach())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="--mode must be 'eval' or 'train', got 'fast'"):
        run_benchmark(settings(mode='fast'))
    with pytest.raises(ValueError, match='--shape and --batch-size must be positive'):
        run_benchmark(settings(shape=(0, 64)))
    with pytest.raises(ValueError, match='need iters >= 1'):
        time_passes(lambda: None, 'cpu', 0, 0, 1, 1)


def test_agreement_and_miou_by_hand():
    gt = [np.array([[0, 0, 1, 1], [2, 2, 255, 1]])]
    ref = [np.array([[0, 0, 1, 1], [2, 2, 2, 1]])]
    fast = [np.array([[0, 1, 1, 1], [2, 2, 2, 1]])]
    result = agreement(ref, fast, gt, num_classes=3, ignore_index=255, source='by hand')
    assert result.pixels == 8 and result.agree == pytest.approx(7 / 8)
    assert result.miou_ref == pytest.approx(100.0)  # every labelled pixel right
    # fast: class 0 IoU 1/2, class 1 IoU 3/4, class 2 IoU 1
    assert result.miou_fast == pytest.approx((0.5 + 0.75 + 1.0) / 3 * 100)
    assert not result.passes
    same = agreement(ref, ref, gt, 3, 255)
    assert same.agree == 1.0 and same.miou_change == 0.0 and same.passes
    with pytest.raises(ValueError, match='equal count and shapes'):
        agreement(ref, [np.zeros((2, 3))])


def test_accuracy_guard_on_the_demo_data(tmp_path):
    """fp32 with BatchNorm folded against fp32 unfolded: the guard passes on labelled images; fp32
    unfolded against itself is the same computation: every label and the mIoU exactly equal."""
    opts = dict(TINY, **{'val_dataloader.dataset.data_root': str(tmp_path / 'synthetic'),
                         'val_dataloader.dataset.num_images': 3, 'val_dataloader.dataset.img_size': (48, 96)})
    result = accuracy_guard(settings(precision='fp32', cfg_options=opts), 3)
    assert result.source.startswith('3 validation images') and result.miou_ref is not None
    assert result.pixels == 3 * 48 * 96
    assert result.agree >= 0.999 and abs(result.miou_change) <= 0.1 and result.passes
    same = accuracy_guard(settings(precision='fp32', fold_bn=False, cfg_options=opts), 3)
    assert same.agree == 1.0 and same.miou_change == 0.0
    assert same.miou_fast == same.miou_ref == result.miou_ref
    assert same.passes


def test_guard_falls_back_to_random_images_without_data(tmp_path, monkeypatch):
    import seg.engine.precision as precision_mod
    from seg.apis.benchmark import _random_batch
    from seg.apis.inference import fast_model
    from seg.apis.model_io import build_model
    from seg.engine.config import load_config
    from seg.engine.precision import resolve_precision

    config = tmp_path / 'no_data.py'
    config.write_text(f"_base_ = [{DEMO!r}]\nval_dataloader = None\ntest_dataloader = None\n")
    same = accuracy_guard(settings(config=str(config), precision='fp32', fold_bn=False, device='cpu'), 2)
    assert same.source == '2 random 32x64 images' and same.miou_ref is None and same.miou_change is None
    assert same.pixels == 2 * 32 * 64 and same.agree == 1.0 and same.passes  # fp32 against itself
    # 'auto' as on a CPU with native bf16 (on one without, auto is int8 in eval: its guard is tested in
    # tests/test_int8.py), whatever this machine is: the guard's agreement is the one counted here, another way
    # (logits of mode='tensor'), and its verdict is that of the threshold.
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ('avx512_bf16',))
    result = accuracy_guard(settings(config=str(config), precision='auto', device='cpu'), 2)
    assert result.source == '2 random 32x64 images' and result.pixels == 2 * 32 * 64
    torch.manual_seed(0)  # the guard's random weights
    ref = build_model(load_config(str(config), TINY)).eval()
    fast = fast_model(copy.deepcopy(ref), resolve_precision('auto', 'cpu'))
    same_pixels = 0
    for seed in range(2):
        batch = _random_batch(1, (32, 64), ref.num_classes, seed=seed)
        with torch.no_grad():
            labels = [m(m.data_preprocessor(batch, False)['inputs'], mode='tensor').argmax(1)
                      for m in (ref, fast)]
        same_pixels += int((labels[0] == labels[1]).sum())
    assert result.agree == same_pixels / (2 * 32 * 64)
    assert result.passes == (result.agree >= GUARD_AGREEMENT)


def test_format_and_present_bytes():
    t = torch.zeros(10)
    assert present_bytes([t, t[:5], torch.zeros(3)]) == 52  # one storage counted once
    timing = PassTiming(times=[[0.5, 0.5], [1.0, 1.0]], images_per_pass=2, first_pass_s=3.0, peak_bytes=2 ** 20)
    text = format_timing(timing, 'x')
    assert 'fps: 3.000 ± 1.414' in text and text.endswith('median_s=0.750000') and '1.0 MiB' in text


def test_the_tool_keeps_the_flags_outside_scripts_use():
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    cmd = [sys.executable, 'tools/benchmark.py', DEMO, '--shape', '32', '64', '--batch-size', '1', '--mode', 'eval',
           '--precision', 'fp32', '--repeat', '1', '--iters', '1', '--warmup', '0', '--device', 'cpu']
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.fullmatch(r'median_s=[0-9]+\.[0-9]{6}', proc.stdout.strip().splitlines()[-1])


def test_int8_asked_for_on_random_weights_is_timed_unguarded_while_auto_keeps_its_guard(monkeypatch, tmp_path):
    """Random weights nearly tie their logits and fail any guard: ``--precision int8`` then times int8 anyway
    (a speed measurement, said in the notes, nothing cached), while ``auto`` keeps the guard's verdict."""
    import seg.engine.precision as precision_mod

    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ())
    _, _, report = run_benchmark(settings(precision='int8', repeat=1))
    assert 'int8 (backbone, decode_head' in report and 'timed without the guard' in report
    assert not any(tmp_path.iterdir())  # an unguarded result is never cached
    _, _, report = run_benchmark(settings(precision='auto', repeat=1))
    assert 'timed without the guard' not in report and 'need 99.5%' in report
