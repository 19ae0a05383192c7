"""Whole-image inference in less memory: the bottleneck's lean forward against timm's (its reference), the
backbone's unused stages let go, and the decode head's features freed after their last read."""
import copy

import pytest
import torch
from timm.models.resnet import Bottleneck

import seg.models  # noqa: F401  (registration)
from seg.analysis.measure import peak_memory
from seg.models.backbones import DilatedResNet
from seg.models.backbones.resnet import PluginBottleneck
from seg.models.factory import available_models, model_config
from seg.models.segmentor import FeatureList
from seg.registry import MODELS

from .conftest import randomize

# A tiny Bottleneck ResNet (expansion 4: stage outputs 32, 32, 64, 64 channels).
TINY = dict(type='DilatedResNet', depth=50, channels=(8, 8, 16, 16), output_stride=8, pretrained=None)


def _tiny_skeleton() -> dict:
    return dict(type='EncoderDecoder', num_classes=5, backbone=dict(TINY),
                decode_head=dict(type='FCNHead', in_channels=64, channels=16, num_classes=5, in_index=3),
                auxiliary_head=dict(type='FCNHead', in_channels=64, channels=8, num_classes=5, num_convs=1,
                                    concat_input=False, in_index=2),
                test_cfg=dict(mode='whole'))


@pytest.mark.parametrize('downsample', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('chunk_bytes', [1, 40000, 64 * 2 ** 20])  # bands of 1 and 4 rows, whole
def test_the_lean_bottleneck_equals_timms_forward(downsample, channels_last, chunk_bytes, monkeypatch):
    """Row bands of one row (chunk 1 byte), of a few rows and one band; with and without a downsample; NCHW
    and NHWC."""
    net = randomize(DilatedResNet(**{k: v for k, v in TINY.items() if k != 'type'})).eval()
    block = net.layer3[0] if downsample else net.layer3[1]
    assert isinstance(block, PluginBottleneck) and (block.downsample is not None) == downsample
    x = torch.randn(2, block.conv1.in_channels, 13, 17)
    if channels_last:
        block, x = block.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    monkeypatch.setattr(PluginBottleneck, 'lean_chunk_bytes', chunk_bytes)
    with torch.no_grad():
        expected = Bottleneck.forward(block, x.clone())
        got = block(x.clone())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_with_autograd_or_a_plugin_the_block_takes_timms_forward(monkeypatch):
    calls = []
    monkeypatch.setattr(PluginBottleneck, 'forward_lean', lambda self, x: calls.append(1) or x)
    net = DilatedResNet(**{k: v for k, v in TINY.items() if k != 'type'}).eval()
    x = torch.randn(1, 64, 8, 8)
    net.layer3[1](x)  # autograd on
    assert calls == []
    with torch.no_grad():
        net.layer3[1](x)
    assert calls == [1]
    plugged = DilatedResNet(**{k: v for k, v in TINY.items() if k != 'type'}, block_attention=dict(type='se'),
                            attention_stages=(3,)).eval()
    with torch.no_grad():
        plugged.layer3[1](x)
    assert calls == [1]


def test_the_backbone_without_autograd_gives_every_kept_stage_unchanged(monkeypatch):
    """Kept stages are not overwritten by the next stage's in-place residual sums; ``keep`` drops the others."""
    monkeypatch.setattr(PluginBottleneck, 'lean_chunk_bytes', 1)
    net = randomize(DilatedResNet(**{k: v for k, v in TINY.items() if k != 'type'})).eval()
    x = torch.randn(2, 3, 37, 45)
    expected = [f.detach() for f in net(x)]  # autograd on: timm's forward everywhere
    with torch.no_grad():
        got = net(x)
        pruned = net(x, keep={1, 3})
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    assert pruned[0] is None and pruned[2] is None
    torch.testing.assert_close(pruned[1], expected[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pruned[3], expected[3], rtol=1e-5, atol=1e-5)


def test_a_hook_on_a_stage_or_block_still_runs_without_autograd():
    net = DilatedResNet(**{k: v for k, v in TINY.items() if k != 'type'}).eval()
    seen = []
    net.layer4.register_forward_hook(lambda m, i, o: seen.append('layer4'))
    net.layer3[1].register_forward_hook(lambda m, i, o: seen.append('layer3.1'))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    assert seen == ['layer3.1', 'layer4']


HEADS = sorted(name for name, (kind, _) in available_models().items() if kind == 'head')


@pytest.mark.parametrize('name', HEADS)
def test_every_head_predicts_the_same_logits_with_features_let_go(name):
    """Inference through FeatureList (unread stages dropped, the others freed after their last read) equals
    the plain path, for every head by its name, on the tiny bottleneck ResNet."""
    torch.manual_seed(0)
    model = randomize(MODELS.build(model_config(name, _tiny_skeleton()))).eval()
    x = torch.randn(1, 3, 40, 56)
    expected = model(x, mode='tensor').detach()  # autograd on: plain lists, timm's forward
    with torch.no_grad():
        got = model(x, mode='tensor')
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_head_reading_a_feature_more_often_than_declared_is_named():
    feats = FeatureList([torch.zeros(1), torch.ones(1)], {1: 1})
    assert feats[1].item() == 1 and list.__getitem__(feats, 1) is None
    with pytest.raises(RuntimeError, match='read backbone feature -1 more often than its in_index declares'):
        feats[-1]
    with pytest.raises(RuntimeError, match='feature 0'):
        feats[0]


def test_whole_image_inference_needs_less_memory_than_timms_forward():
    """Peak tensor memory of one no-autograd pass to the logits: the lean path (stages dropped, residual sums
    in place, the head's input freed) against the same model with every lean part off."""
    torch.manual_seed(0)
    skeleton = _tiny_skeleton()
    skeleton['backbone']['channels'] = (16, 32, 64, 128)  # R-50's proportions at a quarter of its widths
    skeleton['decode_head']['in_channels'], skeleton['auxiliary_head']['in_channels'] = 512, 256
    model = randomize(MODELS.build(model_config('isa', skeleton))).eval()
    x = torch.randn(1, 3, 256, 512)
    reference = copy.deepcopy(model)
    reference.feature_reads = lambda: None  # no FeatureList, no keep
    for block in reference.backbone.modules():
        if isinstance(block, PluginBottleneck):
            block.forward = Bottleneck.forward.__get__(block)
    with torch.no_grad():
        expected, before = peak_memory(lambda: reference.forward_logits(x)['out'])
        got, after = peak_memory(lambda: model.forward_logits(x)['out'])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert after < 0.8 * before, (after, before)  # 0.72 measured


CONVS = {'3x3 dilated 2': dict(kernel_size=3, padding=2, dilation=2), '3x3': dict(kernel_size=3, padding=1),
         '1x1': dict(kernel_size=1), '3x3 no padding': dict(kernel_size=3), '5x3': dict(kernel_size=(5, 3), padding=(2, 1))}


@pytest.mark.parametrize('conv', CONVS)
@pytest.mark.parametrize('band_bytes', [1, 300, 2 ** 30])
def test_a_convolutions_rows_equal_the_slice_of_its_whole_output(conv, band_bytes, monkeypatch):
    """conv2d_rows against the whole convolution (its reference), and conv_add_by_rows_ against adding it,
    with bands of one row, a few rows and the whole map."""
    from torch import nn

    from seg.models import layers

    monkeypatch.setattr(layers, 'LEAN_BAND_BYTES', band_bytes)
    torch.manual_seed(0)
    c = nn.Conv2d(4, 6, bias=False, **CONVS[conv])
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        whole = c(x)
        rows = whole.shape[-2]
        for r0, r1 in ((0, 1), (0, rows), (rows - 2, rows), (3, 5)):
            torch.testing.assert_close(layers.conv2d_rows(x, c.weight, c.padding, c.dilation, r0, r1),
                                       whole[..., r0:r1, :], rtol=1e-5, atol=1e-6)
        out = torch.ones_like(whole)
        layers.conv_add_by_rows_(out, x, c.weight, c.padding, c.dilation)
    torch.testing.assert_close(out, whole + 1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('widths', [(5,), (3, 4), (2, 7, 1)])
@pytest.mark.parametrize('bias', [False, True])
@pytest.mark.parametrize('conv', ['3x3 dilated 2', '1x1'])
@pytest.mark.parametrize('band_bytes', [1, 2 ** 30])
def test_the_convolution_of_a_concatenation_is_the_sum_over_its_parts(widths, bias, conv, band_bytes, monkeypatch):
    """conv_of_concat against cat + conv, its later parts added by bands of one row and whole."""
    from torch import nn

    from seg.models import layers
    from seg.models.layers import conv_of_concat

    monkeypatch.setattr(layers, 'LEAN_BAND_BYTES', band_bytes)
    block = nn.Sequential(nn.Conv2d(sum(widths), 6, bias=bias, **CONVS[conv]), nn.BatchNorm2d(6), nn.ReLU())
    randomize(block).eval()
    parts = [torch.randn(2, w, 9, 11) for w in widths]
    expected = block(torch.cat(parts, dim=1)).detach()
    with torch.no_grad():
        got = conv_of_concat(block, parts)
        seen = []
        block.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
        hooked = conv_of_concat(block, parts)  # a hook sees the concatenation, as it would without this path
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hooked, expected, rtol=1e-5, atol=1e-5)
    assert seen == [sum(widths)]


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('norm', ['BN', 'none'])  # 'none': the output convolution's own tensor is returned
def test_the_ema_unit_without_autograd_equals_its_autograd_forward(channels_last, norm):
    """EMA's no-autograd path (reconstruction in the input's layout, ReLU and residual in place) against its
    autograd forward, the reference; a hook on its output convolution still sees an unchanged output."""
    from seg.models.attention import EMA

    torch.manual_seed(0)
    unit = randomize(EMA(16, num_bases=8, norm=norm)).eval()
    x = torch.randn(2, 16, 7, 9).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = unit(x).detach()
    with torch.no_grad():
        got = unit(x)
        seen = []
        handle = unit.conv_out.register_forward_hook(lambda m, i, o: seen.append(o))
        hooked = unit(x)
        handle.remove()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hooked, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        _, bases, z = unit._em(x)
        recon = torch.bmm(bases, z.transpose(1, 2)).view_as(x)  # the paper's X~ = mu z^T
        torch.testing.assert_close(seen[0], unit.conv_out(torch.relu(recon)), rtol=1e-5, atol=1e-6)
