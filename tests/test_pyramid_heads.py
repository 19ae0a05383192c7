"""The pyramid heads (PSPHead, ASPPHead, APCHead, DMHead): shapes, option checks, DMNet's dynamic
convolution against a direct per-sample reference, batch independence, training behaviour and the
conversion of mmsegmentation's option variants the goldens do not cover."""
import json
import os
import re

import pytest
import torch
import torch.nn.functional as F

from seg.models.convert import convert_mmseg_state_dict
from seg.models.heads import APCHead, ASPPHead, DMHead, PSPHead
from seg.models.heads.dm_head import dynamic_depthwise_conv
from seg.registry import MODELS

from .conftest import ROOT, randomize

HEADS = {'PSPHead': dict(pool_scales=(1, 2, 3, 6)), 'ASPPHead': dict(dilations=(1, 2, 3)),
         'APCHead': dict(pool_scales=(1, 2, 3, 6)), 'DMHead': dict(filter_sizes=(1, 2, 3, 5))}


def build(head, **options):
    cfg = dict(type=head, in_channels=12, channels=8, num_classes=3, **{**HEADS[head], **options})
    return randomize(MODELS.build(cfg))


@pytest.mark.parametrize('head', HEADS)
@pytest.mark.parametrize('size', [(9, 13), (4, 4), (1, 2)])
def test_shapes_in_training_and_eval(head, size):
    module = build(head)
    x = torch.randn(2, 12, *size)
    out = module([torch.randn(2, 5, 1, 1), x])  # the last feature by default (in_index=-1)
    assert set(out) == {'out'} == set(type(module).outputs) and out['out'].shape == (2, 3, *size)
    module.eval()
    with torch.no_grad():
        assert module([x[:1]])['out'].shape == (1, 3, *size)


@pytest.mark.parametrize('head, option', [('PSPHead', 'pool_scales'), ('ASPPHead', 'dilations'),
                                          ('APCHead', 'pool_scales'), ('DMHead', 'filter_sizes')])
@pytest.mark.parametrize('bad', [(), [0, 2], (1, 2.5), 3, 'abc', (True,)])
def test_bad_sizes_raise_naming_option_and_value(head, option, bad):
    with pytest.raises(ValueError, match=rf'{head}: {option} must be a non-empty list of integers >= 1, got '
                                         + re.escape(repr(bad))):
        build(head, **{option: bad})


@pytest.mark.parametrize('head, option', [('PSPHead', 'align_corners'), ('APCHead', 'fusion'), ('DMHead', 'fusion')])
def test_bad_flags_raise(head, option):
    with pytest.raises(ValueError, match=rf"{head}: {option} must be True or False, got 'yes'"):
        build(head, **{option: 'yes'})


# ------------------------------------------------------------------------------------- DMNet's op
def dynamic_conv_reference(x, filters):
    """The definition, summed term by term: ``out[b, c, i, j] = sum_{u,v} f[b, c, u, v] * x[b, c, i + u - k // 2,
    j + v - k // 2]`` with zeros outside x (for an even k the window reaches one further up / left)."""
    b, c, h, w = x.shape
    k = filters.shape[-1]
    before, after = k // 2, (k - 1) // 2
    padded = torch.zeros(b, c, h + k - 1, w + k - 1, dtype=x.dtype)
    padded[:, :, before:before + h, before:before + w] = x
    assert padded.shape[-1] == before + w + after
    out = torch.zeros_like(x)
    for u in range(k):
        for v in range(k):
            out = out + filters[:, :, u, v, None, None] * padded[:, :, u:u + h, v:v + w]
    return out


@pytest.mark.parametrize('k', [1, 2, 3, 4, 7])
def test_dynamic_conv_matches_reference_outputs_and_gradients(k):
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(3, 4, k, k, dtype=torch.float64, requires_grad=True)
    fast, ref = dynamic_depthwise_conv(x, filters), dynamic_conv_reference(x, filters)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, ref)
    g = torch.randn_like(fast)
    torch.testing.assert_close(torch.autograd.grad(fast, (x, filters), g),
                               torch.autograd.grad(ref, (x, filters), g))
    with pytest.raises(ValueError, match=r'filters must be \(B, C, k, k\)'):
        dynamic_depthwise_conv(x, filters[:2])


@pytest.mark.parametrize('head', HEADS)
def test_eval_is_deterministic_and_per_image(head):
    """Each image's output depends on it alone (DMNet's filters are one grouped conv over the batch)."""
    module = build(head).eval()
    x = torch.randn(3, 12, 7, 10)
    with torch.no_grad():
        batch = module([x])['out']
        assert torch.equal(batch, module([x])['out'])
        for i in range(3):
            torch.testing.assert_close(module([x[i:i + 1]])['out'], batch[i:i + 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(module([x.contiguous(memory_format=torch.channels_last)])['out'], batch,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('head', HEADS)
def test_training_updates_batch_statistics_and_every_parameter_learns(head):
    module = build(head, dropout=0.0)
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    module([torch.randn(2, 12, 6, 7)])['out'].square().sum().backward()
    assert all(not torch.equal(bn.running_mean, b) for bn, b in zip(bns, before))
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------ mechanisms
@pytest.mark.parametrize('align_corners', [False, True])
def test_psp_branches_are_pooled_convolved_and_upsampled(align_corners):
    module = build('PSPHead', align_corners=align_corners).eval()
    x = torch.randn(1, 12, 9, 13)
    seen = []
    module.bottleneck.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        module([x])
        cat = seen[0]
        assert torch.equal(cat[:, :12], x)
        for i, scale in enumerate(module.pool_scales):
            branch = F.interpolate(module.pyramid[i](F.adaptive_avg_pool2d(x, scale)), size=(9, 13), mode='bilinear',
                                   align_corners=align_corners)
            torch.testing.assert_close(cat[:, 12 + 8 * i:20 + 8 * i], branch)
        assert torch.allclose(cat[:, 12:20], cat[:, 12:20, :1, :1].expand(-1, -1, 9, 13))  # bin 1: one value
    other = build('PSPHead', align_corners=not align_corners).eval()
    other.load_state_dict(module.state_dict())
    with torch.no_grad():
        assert not torch.allclose(other([x])['out'], module([x])['out'])


def test_aspp_branches_and_image_pool():
    module = build('ASPPHead', dilations=(1, 12, 24, 36)).eval()
    assert module.aspp[0][0].kernel_size == (1, 1)
    for conv, d in zip([b[0] for b in module.aspp[1:]], (12, 24, 36)):
        assert conv.kernel_size == (3, 3) and conv.dilation == (d, d) and conv.padding == (d, d)
    x = torch.randn(2, 12, 9, 13)
    seen = []
    module.bottleneck.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        module([x])
        pooled = module.image_pool(F.adaptive_avg_pool2d(x, 1))
        for align_corners in (False, True):  # mmsegmentation's bilinear resize of the 1x1 feature
            up = F.interpolate(pooled, size=(9, 13), mode='bilinear', align_corners=align_corners)
            torch.testing.assert_close(seen[0][:, :8], up)
        assert seen[0].shape[1] == 8 * 5


def test_apc_context_is_each_pixels_sigmoid_mix_of_the_regions():
    module = build('APCHead', pool_scales=(3,)).eval()
    acm = module.contexts[0]
    x = torch.randn(2, 12, 5, 7)
    with torch.no_grad():
        regions = acm.pooled_reduce(F.adaptive_avg_pool2d(x, 3))  # B, C, 3, 3
        reduced = acm.input_reduce(x)
        guide = acm.global_info(F.adaptive_avg_pool2d(reduced, 1))
        weights = torch.sigmoid(acm.affinity(reduced + guide))  # B, 9, H, W
        context = torch.einsum('bkhw,bck->bchw', weights, regions.flatten(2))
        expected = acm.fusion(F.relu(acm.residual(context) + reduced))
        torch.testing.assert_close(acm(x), expected)
    assert build('APCHead', fusion=False).contexts[0].fusion is None


def test_dm_filters_come_from_each_image():
    module = build('DMHead', filter_sizes=(3,)).eval()
    dcm = module.dcms[0]
    x = torch.randn(2, 12, 6, 8)
    with torch.no_grad():
        filters = dcm.filter_gen(F.adaptive_avg_pool2d(x, 3))
        expected = F.relu(dcm.norm(dynamic_conv_reference(dcm.input_reduce(x), filters)))
        torch.testing.assert_close(dcm(x), expected)
    assert dcm.fusion is None and build('DMHead', fusion=True).dcms[0].fusion is not None


# ------------------------------------------------------------------------------- the other layouts
def _variant(arch, edit):
    with open(os.path.join(ROOT, 'tests', 'data', 'mmseg', f'{arch}.json')) as f:
        keys = [(k[len('decode_head.'):], s) for k, s in json.load(f)['keys'] if k.startswith('decode_head.')]
    return {k: torch.empty(s) for k, s in edit(keys)}


def _fusion_keys(prefix, n):
    return [(f'{prefix}.{i}.fusion_conv.{p}', s) for i in range(n) for p, s in (
        ('conv.weight', [64, 64, 1, 1]), ('bn.weight', [64]), ('bn.bias', [64]), ('bn.running_mean', [64]),
        ('bn.running_var', [64]), ('bn.num_batches_tracked', []))]


@pytest.mark.parametrize('head, fusion', [('APCHead', False), ('DMHead', True)])
def test_fusion_variants_convert_exactly(head, fusion):
    """The goldens have mmsegmentation's recipes (APCNet with fusion, DMNet without): the other setting converts too."""
    if head == 'APCHead':
        state = _variant('apc', lambda keys: [(k, s) for k, s in keys if '.fusion_conv.' not in k])
    else:
        state = _variant('dm', lambda keys: keys + _fusion_keys('dcm_modules', 4))
    converted, unknown = convert_mmseg_state_dict({f'decode_head.{k}': v for k, v in state.items()}, head, None)
    model = MODELS.build(dict(type=head, in_channels=256, channels=64, num_classes=19, fusion=fusion))
    own = {f'decode_head.{k}': v for k, v in model.state_dict().items()}
    assert unknown == [] and set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


def test_heads_have_model_names():
    from seg.models.factory import resolve_name

    for name, cls in (('psp', PSPHead), ('aspp', ASPPHead), ('apc', APCHead), ('dm', DMHead)):
        assert resolve_name(name) == ('head', cls.__name__)
