"""The int8 inference path (seg.engine.quantize): chosen by 'auto' only for inference on CPUs without
native bf16, close to fp32 for every head and plug-in, guarded, and cached by the weights."""
import copy

import pytest
import torch
from torch import nn

import seg.engine.precision as precision_mod
import seg.engine.quantize as quantize_mod
from seg.engine.config import import_all
from seg.engine.precision import fast_model, resolve_precision
from seg.engine.quantize import quantize_segmentor
from seg.models.attention import list_attention

from .conftest import randomize
from .test_precision import HEADS, _segmentor

import_all()

pytestmark = pytest.mark.skipif(quantize_mod.int8_engine() is None, reason='no quantised CPU engine')

# int8 weights (per channel) and 7-bit activations (reduce_range), calibrated on the input they are
# checked on, attention modules in fp32: ||y_int8 - y_fp32|| / ||y_fp32|| measured 1.4e-2 .. 3.3e-2 with
# the decode head quantised (every head below), 2.3e-2 .. 6.1e-2 with a plugged ResNet-18 quantised
# (non-local, SimAM and CAM plug-ins the largest); the bound leaves 2x.
INT8_REL_TOL = 0.12


def _plugged(plug: str) -> nn.Module:
    from seg.registry import MODELS

    return MODELS.build(dict(
        type='EncoderDecoder', num_classes=5,
        backbone=dict(type='DilatedResNet', depth=18, channels=(8, 8, 16, 16), pretrained=None,
                      block_attention=dict(type=plug), attention_stages=(4,)),
        decode_head=dict(type='FCNHead', num_convs=1, in_channels=16, channels=16, num_classes=5)))


def _check_close(model: nn.Module, x: torch.Tensor, name: str, part: str, monkeypatch) -> None:
    """Only ``part`` quantised (tracing dominates the time; both parts together: the tests below)."""
    monkeypatch.setattr(quantize_mod, 'PARTS', (part,))
    randomize(model).eval()
    with torch.no_grad():
        expected = fast_model(model, resolve_precision('fp32', 'cpu'))(x, mode='tensor')
        report = quantize_segmentor(model, [x], cache=False, min_agreement=0.0)
        got = model(x, mode='tensor')
    assert report.quantized == [part], report.reason
    rel = ((got - expected).norm() / expected.norm()).item()
    assert rel < INT8_REL_TOL, f'{name}: relative error {rel:.2e}'


@pytest.mark.parametrize('name', sorted(HEADS))
def test_each_head_in_int8_stays_close_to_fp32(name, monkeypatch):
    _check_close(_segmentor(HEADS[name]), torch.randn(2, 3, 48, 64), name, 'decode_head', monkeypatch)


@pytest.mark.parametrize('name', list_attention())
def test_each_backbone_plugin_stays_fp32_inside_an_int8_backbone(name, monkeypatch):
    from seg.models.attention.base import AttentionModule

    model = _plugged(name)
    _check_close(model, torch.randn(1, 3, 48, 64), name, 'backbone', monkeypatch)
    plugins = [m for m in model.backbone.modules() if isinstance(m, AttentionModule)]
    assert plugins  # still there, as float modules: no packed int8 weights inside
    assert all(not any(hasattr(sub, '_packed_params') for sub in p.modules()) for p in plugins)


def test_auto_picks_int8_only_for_inference_on_cpus_without_bf16(monkeypatch):
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ())
    chosen = resolve_precision('auto', 'cpu', inference=True)
    assert (chosen.name, chosen.channels_last) == ('int8', False)
    assert 'no native bf16' in chosen.reason and 'int8' in chosen.reason and 'guard' in chosen.reason
    assert resolve_precision('auto', 'cpu').name == 'fp32'  # training stays fp32
    assert resolve_precision('fp32', 'cpu', inference=True).name == 'fp32'
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ('avx512_bf16',))
    assert resolve_precision('auto', 'cpu', inference=True).name == 'bf16'
    with pytest.raises(ValueError, match='int8 is for evaluation and inference on the CPU'):
        resolve_precision('int8', 'cpu')
    assert resolve_precision('int8', 'cpu', inference=True).reason == 'requested'


def _small() -> nn.Module:
    return randomize(_segmentor(HEADS['ccnet'])).eval()


def test_the_cache_is_reused_and_follows_the_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(quantize_mod, 'INT8_AGREEMENT', 0.0)  # a random net's labels are near ties
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: loads.append(k.get('weights_only')) or real_load(*a, **k))
    x = torch.randn(2, 3, 48, 64)
    base = _small()
    first = fast_model(copy.deepcopy(base), resolve_precision('int8', inference=True), calibration=[x])
    assert first.int8_report.active and not first.int8_report.from_cache
    assert len(list((tmp_path / 'int8').glob('*.pt'))) == 1
    again = fast_model(copy.deepcopy(base), resolve_precision('int8', inference=True), calibration=[x])
    assert again.int8_report.from_cache and again.int8_report.quantized == first.int8_report.quantized
    assert loads == [True]
    with torch.no_grad():
        assert torch.equal(again(x, mode='tensor'), first(x, mode='tensor'))
    changed = copy.deepcopy(base)  # another checkpoint: another key, calibrated anew
    with torch.no_grad():
        next(changed.decode_head.parameters()).mul_(1.01)
    other = fast_model(changed, resolve_precision('int8', inference=True), calibration=[x])
    assert not other.int8_report.from_cache
    assert len(list((tmp_path / 'int8').glob('*.pt'))) == 2


def test_a_failing_guard_keeps_fp32_and_says_why(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(quantize_mod, 'INT8_AGREEMENT', 1.01)  # no model can pass
    x = torch.randn(1, 3, 48, 64)
    base = _small()
    model = fast_model(copy.deepcopy(base), resolve_precision('int8', inference=True), calibration=[x])
    report = model.int8_report
    assert not report.active and 'failed the guard' in report.reason
    assert not any(isinstance(m, torch.fx.GraphModule) for m in model.modules())
    with torch.no_grad():
        # the fp32 it keeps is the fp32 default: BatchNorm folded, channels-last
        expected = fast_model(copy.deepcopy(base), resolve_precision('fp32', 'cpu'))(x, mode='tensor')
        assert torch.allclose(model(x, mode='tensor'), expected)
    assert model.data_preprocessor.channels_last
    cached = fast_model(copy.deepcopy(base), resolve_precision('int8', inference=True), calibration=[x])
    assert cached.int8_report.from_cache and 'cached int8 guard failed' in cached.int8_report.reason


def test_without_calibration_images_the_first_batches_calibrate(monkeypatch, tmp_path):
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(quantize_mod, 'INT8_AGREEMENT', 0.0)
    model = fast_model(_small(), resolve_precision('int8', inference=True))
    assert model.int8_report is None
    x = torch.randn(2, 3, 48, 64)
    with torch.inference_mode():
        model.predict(x)  # 2 of the 4 calibration images: fp32
        assert not isinstance(model.backbone, torch.fx.GraphModule)
        model.predict(x)  # 4: calibrated, guarded; this batch still ran fp32
        model.predict(x)
    report = model.int8_report
    assert report.images == 4 and report.active and isinstance(model.backbone, torch.fx.GraphModule)


def test_a_failing_guard_on_the_first_batches_switches_to_the_fp32_default(monkeypatch, tmp_path):
    """The lazy path (tools/infer.py): the guard fails after the first batches; the model, its data
    preprocessor and the batch at hand go channels-last, as the fp32 default; logits equal that default's."""
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(quantize_mod, 'INT8_AGREEMENT', 1.01)  # no model can pass
    x = torch.randn(2, 3, 48, 64)
    base = _small()
    model = fast_model(copy.deepcopy(base), resolve_precision('int8', inference=True))
    assert model.int8_report is None and not model.data_preprocessor.channels_last
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, args: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))
    expected = fast_model(copy.deepcopy(base), resolve_precision('fp32', 'cpu'))
    with torch.inference_mode():
        first = model(x, mode='tensor')
        second = model(x, mode='tensor')  # the 4th image: the guard fails, this batch goes on channels-last
        assert seen[0] is False and seen[-1] is True  # (between them the guard's own fp32 passes)
        # the next batch through the data preprocessor (as tools/infer.py's) arrives channels-last
        data = model.data_preprocessor(dict(inputs=[torch.zeros(3, 48, 64, dtype=torch.uint8)],
                                             data_samples=[dict()]))
        assert data['inputs'].is_contiguous(memory_format=torch.channels_last)
        third = model(x, mode='tensor')
        want = expected(x, mode='tensor')
    assert not model.int8_report.active and 'failed the guard' in model.int8_report.reason
    assert next(model.backbone.parameters()).is_contiguous(memory_format=torch.channels_last)
    for got in (first, second, third):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the cached failure: decided at once, channels-last from the start
    cached = fast_model(copy.deepcopy(base), resolve_precision('int8', inference=True))
    assert cached.int8_report.from_cache and not cached.int8_report.active
    assert cached.data_preprocessor.channels_last
