"""Speed paths keep the numbers: BatchNorm folding is exact (within 1e-5 of the output's scale) for
every head and every zoo module in both roles, channels-last is exact, bf16 autocast stays within a
stated tolerance of fp32, and the precision a run uses is chosen by the hardware and stated."""
import copy

import pytest
import torch
from torch import nn

import seg.engine.precision as precision_mod
from seg.engine.config import import_all
from seg.engine.precision import resolve_precision
from seg.models.attention import list_attention
from seg.models.fuse import fold_batchnorm
from seg.registry import MODELS

from .conftest import randomize
from .test_factory import NEW_HEADS

import_all()

HEADS = {
    'fcn': dict(type='FCNHead', num_convs=2, concat_input=True),
    'ccnet': dict(type='CCHead', recurrence=2),
    'danet': dict(type='DAHead'),
    'nonlocal': dict(type='NLHead'),
    **{f'zoo:{n}': dict(type='AttentionHead', attention=dict(type=n)) for n in list_attention()},
}
# NAM's BatchNorm weighs channels by |gamma| (it is not after a convolution): it stays, as the head's
# context module or as the blocks' plug-in.
HEAD_UNFOLDABLE = {'zoo:nam': 'context.bn'}
PLUGIN_UNFOLDABLE = {'nam': 'attn.bn'}
FOLD_TOL = 1e-5  # of the output's largest magnitude, in fp32
# Plug-ins put an attention module in every block: with this randomization (attention gammas near 1)
# the softmaxes of sixteen criss-cross / channel attentions amplify fp32 rounding to ~1e-5 (measured
# up to 1.02e-5). The algebra itself is checked exact in float64.
PLUGIN_FOLD_TOL = 3e-5
# bf16 keeps 8 bits of mantissa: ||y_bf16 - y_fp32|| / ||y_fp32|| is about 1e-2 through a ResNet-18 and a
# head here (measured 0.5e-2 .. 1.3e-2); the attention softmax statistics stay in fp32 (seg.ops).
BF16_REL_TOL = 3e-2


class _Net(nn.Module):
    def __init__(self, head: dict, plug: str | None = None):
        super().__init__()
        extra = {'block_attention': dict(type=plug)} if plug else {}
        self.backbone = MODELS.build(dict(type='DilatedResNet', depth=18, channels=(16, 16, 32, 32), **extra))
        self.head = MODELS.build(dict(head, in_channels=32, channels=32, num_classes=5))

    def forward(self, x):
        return self.head(self.backbone(x))['out']


def _scale_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _fold_and_check(model: nn.Module, x: torch.Tensor, allowed: str | None = None, tol: float = FOLD_TOL) -> None:
    with torch.no_grad():
        expected = model(x)
        folded = copy.deepcopy(model)
        count = fold_batchnorm(folded)
        got = folded(x)
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert count > 0 and all(allowed and n.endswith(allowed) for n in left), left
    assert _scale_err(got, expected) < tol
    exact = copy.deepcopy(model).double()  # folded in float64: the algebra alone
    fold_batchnorm(exact)
    with torch.no_grad():
        assert _scale_err(exact(x.double()), model.double()(x.double())) < 1e-10


@pytest.mark.parametrize('name', sorted(HEADS))
def test_folding_batchnorm_keeps_every_head_exact(name):
    model = randomize(_Net(HEADS[name])).eval()
    _fold_and_check(model, torch.randn(2, 3, 48, 64), HEAD_UNFOLDABLE.get(name))


@pytest.mark.parametrize('name', list_attention())
def test_folding_batchnorm_keeps_every_backbone_plugin_exact(name):
    model = randomize(_Net(HEADS['fcn'], plug=name)).eval()
    _fold_and_check(model, torch.randn(2, 3, 48, 64), PLUGIN_UNFOLDABLE.get(name), PLUGIN_FOLD_TOL)


def test_folding_refuses_a_training_model():
    with pytest.raises(ValueError, match='model.eval'):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


@pytest.mark.parametrize('name', sorted(HEADS))
def test_each_head_in_bf16_and_channels_last_stays_close_to_fp32(name):
    model = randomize(_Net(HEADS[name])).eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        expected = model(x)
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        assert _scale_err(nhwc(x_nhwc), expected) < FOLD_TOL  # the memory format alone changes nothing
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = nhwc(x_nhwc).float()
    assert torch.isfinite(low).all()
    rel = ((low - expected).norm() / expected.norm()).item()
    assert rel < BF16_REL_TOL, f'{name}: relative error {rel:.2e}'


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ('avx512_bf16',))
    chosen = resolve_precision('auto', 'cpu')
    assert (chosen.name, chosen.channels_last) == ('bf16', True) and 'avx512_bf16' in chosen.reason
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ())
    chosen = resolve_precision('auto', 'cpu')
    assert (chosen.name, chosen.channels_last) == ('fp32', True) and 'no native bf16' in chosen.reason
    assert resolve_precision('bf16', 'cpu', channels_last=False).channels_last is False
    assert resolve_precision('fp32', 'cpu', channels_last=False).channels_last is False
    assert resolve_precision('fp32', 'cpu').channels_last is True  # oneDNN's NHWC convolutions copy nothing
    assert resolve_precision('int8', 'cpu', inference=True).channels_last is False  # int8 stays NCHW


@pytest.mark.parametrize('variable, value, native', [
    ('ONEDNN_MAX_CPU_ISA', 'AVX2', False), ('DNNL_MAX_CPU_ISA', 'avx512_core_vnni', False),
    ('ONEDNN_MAX_CPU_ISA', 'AVX512_CORE_BF16', True), ('ONEDNN_MAX_CPU_ISA', 'ALL', True),
])
def test_a_onednn_isa_cap_below_bf16_makes_auto_treat_the_cpu_as_one_without_it(variable, value, native,
                                                                                 monkeypatch):
    # How an AVX2-only CPU is emulated on a newer one: oneDNN would emulate bf16, so auto must not pick it.
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: ('amx_bf16', 'avx512_bf16'))
    chosen = resolve_precision('auto', 'cpu')
    if native:
        assert chosen.name == 'bf16'
    else:
        assert chosen.name == 'fp32' and f'ONEDNN_MAX_CPU_ISA={value}' in chosen.reason
        assert resolve_precision('auto', 'cpu', inference=True).name == 'int8'


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, int8, got 'half'"):
        resolve_precision('half')
    with pytest.raises(ValueError, match='fp16 mixed precision needs a CUDA device'):
        resolve_precision('fp16', 'cpu')
    with pytest.raises(ValueError, match="channels_last must be 'auto', True or False"):
        resolve_precision('fp32', 'cpu', channels_last='yes')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU choice')
@pytest.mark.parametrize('flags, requested, expected', [
    (('avx512_bf16',), None, ('bf16', True, 'AutoAmpOptimWrapper')),
    ((), None, ('fp32', True, 'SegOptimWrapper')),
    (('amx_bf16',), 'fp32', ('fp32', True, 'SegOptimWrapper')),
])
def test_training_runs_take_the_resolved_precision(flags, requested, expected, monkeypatch, tmp_path):
    from seg.apis.train import build_runner

    from .conftest import ROOT

    monkeypatch.setattr(precision_mod, 'cpu_bf16_flags', lambda: flags)
    runner = build_runner(f'{ROOT}/configs/demo_ccnet.py', work_dir=str(tmp_path), precision=requested,
                          cfg_options={'train_cfg.max_iters': 1})
    wrapper = runner.cfg.optim_wrapper
    assert (runner.cfg.precision, runner.cfg.channels_last, wrapper.type) == expected
    if expected[0] == 'bf16':
        assert wrapper.dtype == 'bfloat16'
    if expected[1]:
        assert runner.model.data_preprocessor.channels_last
        conv = next(m for m in runner.model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def _segmentor(head: dict) -> nn.Module:
    return MODELS.build(dict(
        type='EncoderDecoder', num_classes=5,
        backbone=dict(type='DilatedResNet', depth=18, channels=(16, 16, 32, 32), pretrained=None),
        decode_head=dict(head, in_channels=32, channels=32, num_classes=5)))


@pytest.mark.parametrize('name', sorted(HEADS))
def test_fast_model_casts_the_weights_and_stays_close_to_fp32(name):
    """Inference casts the BN-folded weights to bf16 (no autocast): same tolerance, float32 logits."""
    from seg.apis.inference import fast_model

    model = randomize(_segmentor(HEADS[name])).eval()
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
        fast = fast_model(copy.deepcopy(model), resolve_precision('bf16', 'cpu'))
        got = fast(x, mode='tensor')
        with torch.autocast('cpu', dtype=torch.bfloat16):  # what the cast replaces
            folded = fast_model(copy.deepcopy(model), resolve_precision('fp32', 'cpu', channels_last=True))
            autocast = folded(x, mode='tensor')
    assert fast.compute_dtype == torch.bfloat16 and got.dtype == torch.float32
    assert next(fast.backbone.parameters()).dtype == torch.bfloat16
    assert fast.data_preprocessor.mean.dtype == torch.float32  # normalisation stays float32
    rel = ((got - expected).norm() / expected.norm()).item()
    assert rel < BF16_REL_TOL, f'{name}: relative error {rel:.2e}'
    assert ((got - autocast).norm() / expected.norm()).item() < BF16_REL_TOL


def test_a_resolved_cpu_run_flushes_subnormals_to_zero():
    """Subnormal arithmetic is tens of times slower on x86 (DANet's fp32 channel-attention softmax is full of
    them); every run resolved for the CPU flushes them."""
    torch.set_flush_denormal(False)
    try:
        assert (torch.tensor([1e-39]) * 1.0).item() != 0
        resolve_precision('fp32', 'cpu')
        assert (torch.tensor([1e-39]) * 1.0).item() == 0
    finally:
        torch.set_flush_denormal(True)


# mmsegmentation's other context heads (issue 18), as the compare tool names them; OCR needs its FCN stage's input.
CONTEXT_HEADS = {n: dict(type=t) for n, t in NEW_HEADS.items()}
CONTEXT_HEADS['ocr'] = dict(type='OCRHead', soft_in_channels=32, soft_channels=16, ocr_channels=16)
# The layout alone, in float64: an op that mistook a channels-last tensor's strides would be off by O(1). (In
# float32 the two layouts round differently, and with train-mode BatchNorm on 6x8 maps the backbone's gradients
# amplify that: EMA's reached 1e-2 of their scale at layer 3 while its inputs and output gradient agreed to
# 6e-6, and float64 fed the channels-last run's inputs gave the same 1e-2: conditioning, not the layout.)
LAYOUT_GRAD_TOL = 1e-9


def _train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    loss = nn.functional.cross_entropy(nn.functional.interpolate(model(x), size=x.shape[-2:], mode='bilinear'),
                                       target)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('name, plug', [*[(h, None) for h in sorted({**HEADS, **CONTEXT_HEADS})],
                                        *[('fcn', p) for p in list_attention()]])
def test_training_in_channels_last_gives_the_nchw_loss_and_gradients(name, plug):
    # The CPU's fp32 default is channels-last for training too (resolve_precision): only the layout may change.
    torch.manual_seed(0)
    model = randomize(_Net({**HEADS, **CONTEXT_HEADS}[name], plug=plug)).train().double()
    x, target = torch.randn(2, 3, 48, 64, dtype=torch.float64), torch.randint(0, 5, (2, 48, 64))
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    torch.manual_seed(1)  # the same dropout masks on both sides
    loss, grads = _train_step(model, x, target)
    torch.manual_seed(1)
    loss_nhwc, grads_nhwc = _train_step(nhwc, x.contiguous(memory_format=torch.channels_last), target)
    assert abs(loss_nhwc - loss) <= 1e-12 * loss.abs()
    assert grads.keys() == grads_nhwc.keys() and grads
    worst = max(_scale_err(grads_nhwc[k], grads[k]) for k in grads if grads[k].abs().max() > 1e-12)
    assert worst < LAYOUT_GRAD_TOL, f'{name} {plug}: gradients differ by {worst:.2e} of their scale'
