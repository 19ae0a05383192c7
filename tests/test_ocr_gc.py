"""OCRNet's head (two stages in one: soft object regions, then the object context) and GCNet's global
context block (zoo module ``gc``) with its head preset: shapes, training outputs, bad options, the
formulas recomputed by hand in float64, and what the visualiser records and draws.

The registry-parametrized tests (test_attention*.py, test_precision.py, ...) cover ``gc`` as a zoo
module; the exact match with mmsegmentation 1.2.2 is tests/test_convert.py (archs ``ocr``, ``gc``)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seg.models.attention import GlobalContext, build_attention
from seg.models.heads import AttentionHead, GCHead, OCRHead
from seg.models.heads.ocr_head import ObjectContext
from seg.registry import ATTENTION, MODELS

from .conftest import ROOT, randomize

C = 16


def _input(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _conv1x1(x, conv):
    out = torch.einsum('oc,bchw->bohw', conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def _cbr(x, block):
    """An eval-mode 1x1 ConvBNReLU by hand."""
    conv, bn = block[0], block[1]
    y = _conv1x1(x, conv)
    y = (y - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    return torch.relu(y * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))


# ------------------------------------------------------------------------------------------- GC
def _gc_reference(m: GlobalContext, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    if m.pooling_type == 'att':
        logits = _conv1x1(x, m.conv_mask).reshape(b, h * w)  # [B, N]
        alpha = torch.exp(logits - logits.max(1, keepdim=True).values)
        alpha = alpha / alpha.sum(1, keepdim=True)
        context = torch.einsum('bcn,bn->bc', x.reshape(b, c, -1), alpha)
    else:
        context = x.reshape(b, c, -1).mean(-1)

    def transform(seq):
        y = context @ seq[0].weight[:, :, 0, 0].T + seq[0].bias  # [B, P]
        mu, var = y.mean(1, keepdim=True), y.var(1, unbiased=False, keepdim=True)
        y = (y - mu) / torch.sqrt(var + seq[1].eps) * seq[1].weight.view(1, -1) + seq[1].bias.view(1, -1)
        return (torch.relu(y) @ seq[3].weight[:, :, 0, 0].T + seq[3].bias).view(b, c, 1, 1)

    out = x
    if 'channel_mul' in m.fusion_types:
        out = out * torch.sigmoid(transform(m.channel_mul))
    if 'channel_add' in m.fusion_types:
        out = out + transform(m.channel_add)
    return out


@pytest.mark.parametrize('pooling_type', ['att', 'avg'])
@pytest.mark.parametrize('fusion_types', [('channel_add',), ('channel_mul',), ('channel_mul', 'channel_add')])
def test_gc_block_is_its_formula(pooling_type, fusion_types):
    m = randomize(GlobalContext(C, ratio=1 / 4, pooling_type=pooling_type, fusion_types=fusion_types)).double()
    x = _input(2, C, 5, 7)
    torch.testing.assert_close(m(x), _gc_reference(m, x))
    assert ATTENTION.get('gc') is GlobalContext and type(build_attention('gc', C)) is GlobalContext


def test_gc_block_starts_as_identity_and_its_mask_bias_does_nothing():
    x = _input(2, C, 4, 6, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(GlobalContext(C)(x), x)  # channel_add: last conv zero
        torch.testing.assert_close(GlobalContext(C, fusion_types=('channel_mul',))(x), x / 2)  # sigmoid(0)
        m = randomize(GlobalContext(C))
        y = m(x)
        m.conv_mask.bias.fill_(3.0)  # shifts every logit alike: the softmax ignores it
        torch.testing.assert_close(m(x), y)
    assert 'conv_mask.bias' in m.state_dict() and 'conv_mask.bias' not in dict(m.named_parameters())


def test_gc_param_count_and_width():
    c = 64
    for kw, expected in ((dict(), c + 2 * c * 16 + 3 * 16 + c),
                         (dict(pooling_type='avg', ratio=1 / 16), 2 * c * 4 + 3 * 4 + c),
                         (dict(fusion_types=('channel_add', 'channel_mul')), c + 2 * (2 * c * 16 + 3 * 16 + c))):
        m = GlobalContext(c, **kw)
        assert sum(p.numel() for p in m.parameters()) == expected == GlobalContext.param_count(c, **kw), kw
    assert GlobalContext(c).planes == 16 and 'planes=16' in repr(GlobalContext(c))


@pytest.mark.parametrize('kw, match', [
    (dict(ratio=0), 'GlobalContext: ratio must be a number > 0'),
    (dict(ratio=1 / 32), r'int\(channels \* ratio\) >= 1.*channels=16'),
    (dict(pooling_type='max'), "pooling_type must be one of att, avg, got 'max'"),
    (dict(fusion_types='channel_add'), 'fusion_types must be a sequence'),
    (dict(fusion_types=()), 'non-empty subset of channel_add, channel_mul'),
    (dict(fusion_types=('channel_sum',)), "got \\('channel_sum',\\)"),
    (dict(fusion_types=('channel_add', 'channel_add')), 'without repeats'),
])
def test_gc_bad_options_say_which(kw, match):
    with pytest.raises(ValueError, match=match):
        GlobalContext(C, **kw)
    with pytest.raises(ValueError, match=match):  # through the head preset too
        GCHead(C, C, 3, **kw)


def test_gc_map_is_the_pooling_softmax():
    m = randomize(GlobalContext(C)).eval()
    seen = []
    m.conv_mask.register_forward_hook(lambda mod, i, o: seen.append(o.detach()))
    x = _input(1, C, 5, 7, dtype=torch.float32)
    m(x)
    amap = m.maps({'conv_mask': seen})['context']
    assert amap.kind == 'spatial' and amap.values.shape == (5, 7)
    torch.testing.assert_close(amap.values.sum(), torch.tensor(1.0))
    torch.testing.assert_close(amap.values.flatten(), torch.softmax(seen[0].flatten(), 0))
    assert GlobalContext(C, pooling_type='avg').maps({}) == {}  # uniform weights: nothing to draw


def test_gc_head_is_the_attention_head_preset():
    head = MODELS.build(dict(type='GCHead', in_channels=32, channels=C, num_classes=3, in_index=-1))
    assert type(head) is AttentionHead and type(head.context) is GlobalContext
    assert head.attention_cfg == dict(type='gc', ratio=1 / 4, pooling_type='att', fusion_types=('channel_add',))
    keys = set(head.state_dict())
    assert {'conv_in.0.weight', 'context.conv_mask.weight', 'context.conv_mask.bias', 'context.channel_add.1.weight',
            'conv_out.0.weight', 'bottleneck.0.weight', 'cls.1.weight'} <= keys
    assert head([torch.randn(2, 32, 5, 7)])['out'].shape == (2, 3, 5, 7)


# ------------------------------------------------------------------------------------------ OCR
def _feats(b=2, h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 8, h, w, generator=g), torch.randn(b, 8, h, w, generator=g),
            torch.randn(b, 16, h, w, generator=g), torch.randn(b, 32, h, w, generator=g)]


def _ocr(**kw):
    torch.manual_seed(0)
    return OCRHead(32, 24, 5, **{'ocr_channels': 8, 'soft_channels': 12, **kw})


def test_ocr_head_outputs_in_training_and_eval():
    head = _ocr()
    assert head.soft_head.convs[0][0].in_channels == 16  # soft_in_channels: in_channels // 2 by default
    assert OCRHead.outputs == ('out', 'soft')
    feats = _feats()
    outs = head(feats)
    assert set(outs) == {'out', 'soft'} and all(v.shape == (2, 5, 6, 7) for v in outs.values())
    # 'out' depends on both stages (the soft regions steer the context), 'soft' on stage 3 only
    feats = [f.requires_grad_() for f in feats]
    outs = head(feats)
    g_out = torch.autograd.grad(outs['out'].sum(), [feats[2], feats[3]], retain_graph=True)
    assert all(g.abs().sum() > 0 for g in g_out)
    g_soft = torch.autograd.grad(outs['soft'].sum(), [feats[2], feats[3]], allow_unused=True)
    assert g_soft[0].abs().sum() > 0 and g_soft[1] is None
    head.eval()
    with torch.no_grad():
        a, b = head(_feats()), head(_feats())
    assert set(a) == {'out'} and torch.equal(a['out'], b['out'])  # eval: deterministic, no 'soft'


def test_ocr_head_is_its_formula():
    """Both stages recomputed by hand (float64, eval-mode BN): the FCN stage's logits, their softmax
    over positions as region weights, the N x K pixel-region attention, the fusion and the classifier."""
    head = randomize(_ocr()).double().eval()
    feats = [f.double() for f in _feats(b=2, h=5, w=6)]
    with torch.no_grad():
        got = head(feats)['out']
    fcn = head.soft_head
    y = F.conv2d(feats[2], fcn.convs[0][0].weight, padding=1)
    bn = fcn.convs[0][1]
    y = torch.relu((y - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
                   * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    soft = _conv1x1(y, fcn.cls[1])  # [B, K, H, W]
    x = F.conv2d(feats[3], head.conv_in[0].weight, padding=1)
    bn = head.conv_in[1]
    x = torch.relu((x - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
                   * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    ctx = head.context
    b, c, h, w = x.shape
    k = soft.shape[1]
    s = torch.softmax(soft.reshape(b, k, -1), dim=-1)  # [B, K, N]
    regions = torch.einsum('bkn,bcn->bck', s, x.reshape(b, c, -1)).unsqueeze(-1)  # [B, C, K, 1]
    q = _cbr(_cbr(x, ctx.query[0]), ctx.query[1]).reshape(b, -1, h * w)  # [B, Ck, N]
    key = _cbr(_cbr(regions, ctx.key[0]), ctx.key[1]).reshape(b, -1, k)  # [B, Ck, K]
    v = _cbr(regions, ctx.value).reshape(b, -1, k)
    out = torch.zeros(b, v.shape[1], h * w, dtype=torch.float64)
    for p in range(h * w):  # every pixel weighs the K regions
        weights = torch.softmax(torch.einsum('bc,bck->bk', q[:, :, p], key) / math.sqrt(8), dim=-1)
        out[:, :, p] = torch.einsum('bk,bck->bc', weights, v)
    fused = _cbr(torch.cat([_cbr(out.reshape(b, -1, h, w), ctx.conv_out), x], dim=1), ctx.bottleneck)
    torch.testing.assert_close(got, _conv1x1(fused, head.cls[1]))


def test_ocr_bad_inputs_are_named():
    with pytest.raises(ValueError, match='ObjectContext: key_channels must be an integer >= 1'):
        OCRHead(32, 24, 5, ocr_channels=0)
    block = ObjectContext(C, 4)
    with pytest.raises(ValueError, match=r'region logits \(B, K, H, W\) at the size of x'):
        block(torch.randn(1, C, 5, 6), torch.randn(1, 3, 4, 6))
    with pytest.raises(ValueError, match=r'\(B, 16, H, W\)'):
        block(torch.randn(1, C + 1, 5, 6), torch.randn(1, 3, 5, 6))
    with pytest.raises(ValueError, match='num_classes'):
        OCRHead(32, 24, 0)


def test_ocr_segmentor_supervises_out_and_soft_with_the_config_weights():
    import os

    from seg.engine.config import load_config

    cfg = load_config(os.path.join(ROOT, 'configs/ocrnet/ocrnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'))
    assert cfg.model.loss_weights == dict(out=1.0, soft=0.4) and 'auxiliary_head' not in cfg.model
    cfg = load_config(os.path.join(ROOT, 'configs/ocrnet/ocrnet_r101-d8_8xb2-80k_cityscapes-512x1024.py'))
    assert cfg.param_scheduler[0]['end'] == 80000 and cfg.optim_wrapper.optimizer.lr == 0.02  # 0.x's published run
    model = MODELS.build(dict(
        type='EncoderDecoder', num_classes=3,
        backbone=dict(type='DilatedResNet', depth=18, channels=(8, 8, 16, 32)),
        decode_head=dict(type='OCRHead', in_channels=32, channels=16, num_classes=3, ocr_channels=8,
                         soft_channels=8, norm='BN'),
        loss_weights=dict(out=1.0, soft=0.4)))
    target = torch.randint(0, 3, (32, 32))
    losses = model.loss(torch.randn(2, 3, 32, 32), [dict(gt_sem_seg=target)] * 2)
    assert set(losses) == {'loss_out', 'loss_soft', 'acc_seg'}
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_ocr_maps_are_recorded_and_drawn(tmp_path):
    """The recorder finds the object context block in a model; its maps are the soft regions and, for
    a point, the effective weights whose sum over pixels of x is the point's mix of region features."""
    from seg.visualization.attention import AttentionRecorder, Geometry, draw_attention

    head = randomize(_ocr()).eval()
    model = nn.ModuleDict(dict(decode_head=head))
    feats = _feats(b=1, h=6, w=8)
    with AttentionRecorder(model) as rec, torch.no_grad():
        head(feats)
    assert list(rec.modules) == ['decode_head.context']
    records = rec.records['decode_head.context']
    assert set(records) == {'regions', 'query', 'key'}
    ctx = head.context
    plain = ctx.maps(records)
    assert plain and all(k.startswith('region-c') and m.kind == 'spatial' and m.values.shape == (6, 8)
                         for k, m in plain.items())
    point = ctx.maps(records, lambda h, w: (2, 5))
    assert set(point) == {'object-context', 'top-region'}
    eff = point['object-context'].values  # [H, W]: sum_k w_pk s_k
    torch.testing.assert_close(eff.sum(), torch.tensor(1.0))
    # applied to the block's input, the effective map gives the point's weighted mix of region features
    with torch.no_grad():
        x = head.conv_in(feats[3])
        s = torch.softmax(records['regions'][0].flatten(2), -1)  # [1, K, N]
        regions = (s @ x.flatten(2).transpose(1, 2))[0]  # [K, C]
        q, k = records['query'][0][0, :, 2, 5], records['key'][0][0].flatten(1)
        w = torch.softmax(q @ k / math.sqrt(ctx.key_channels), 0)
    torch.testing.assert_close(torch.einsum('hw,chw->c', eff, x[0]), w @ regions, rtol=1e-4, atol=1e-5)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    paths, manifest = draw_attention(rec, image, Geometry(ori=(48, 64), img=(48, 64), pad=(48, 64)), [(40, 16)],
                                     str(tmp_path), 'img')
    names = {p.split('/')[-1] for p in paths}
    assert {'img_objectcontext_decode_head-context_object-context_x40_y16.png',
            'img_objectcontext_decode_head-context_top-region_x40_y16.png'} <= names
    assert any('_region-c' in n for n in names) and len(manifest) == len(paths)
