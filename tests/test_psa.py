"""PSANet: mmcv's PSAMask in plain PyTorch (fast path against the kernel's loops), the attention without the
N x N buffer (outputs and gradients against mmsegmentation's formula), and PSAHead (options, shapes, the
shrink rule, compact maps, training and eval, folding, what the visualiser draws)."""
import ast
import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seg.models.fuse import fold_batchnorm
from seg.models.heads import PSAHead
from seg.models.heads.psa_head import PSA, psa_shrunk_size
from seg.ops import (
    psa_attention,
    psa_attention_reference,
    psa_attention_weights,
    psa_mask,
    psa_mask_reference,
)

from .conftest import ROOT, randomize

# (H, W, mask_h, mask_w): masks smaller than the map, larger (every pixel reaches everything), equal,
# odd and even sizes, 1x1.
SIZES = [(5, 7, 3, 5), (4, 6, 9, 13), (6, 5, 4, 6), (5, 7, 7, 9), (3, 3, 1, 1), (2, 8, 5, 2)]


def _kernel_loops():
    """``_psamask_forward`` of tests/data/mmseg/make_golden.py (mmcv's kernel as loops, what made the golden),
    taken from that file's source: the file itself imports mmsegmentation."""
    path = os.path.join(ROOT, 'tests', 'data', 'mmseg', 'make_golden.py')
    tree = ast.parse(open(path).read())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == '_psamask_forward')
    scope: dict = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), path, 'exec'), scope)
    return scope['_psamask_forward']


def _kernel(mask: torch.Tensor, psa_type: str, mh: int, mw: int) -> torch.Tensor:
    b, _, h, w = mask.shape
    buffer = np.zeros((b, h * w, h, w))
    _kernel_loops()(mask.double().numpy(), buffer, 0 if psa_type == 'collect' else 1, b, h, w, mh, mw,
                    (mh - 1) // 2, (mw - 1) // 2)
    return torch.from_numpy(buffer)


# ------------------------------------------------------------------------------------------ PSAMask
@pytest.mark.parametrize('psa_type', ['collect', 'distribute'])
@pytest.mark.parametrize('h, w, mh, mw', SIZES)
def test_psa_mask_fast_and_reference_are_the_kernel(psa_type, h, w, mh, mw):
    mask = torch.randn(2, mh * mw, h, w, dtype=torch.float64)
    expected = _kernel(mask, psa_type, mh, mw)
    assert torch.equal(psa_mask_reference(mask, psa_type, (mh, mw)), expected)
    assert torch.equal(psa_mask(mask, psa_type, (mh, mw)), expected)


@pytest.mark.parametrize('psa_type', ['collect', 'distribute'])
@pytest.mark.parametrize('h, w, mh, mw', SIZES[:4])
def test_psa_mask_gradients_match_the_reference(psa_type, h, w, mh, mw):
    mask = torch.randn(2, mh * mw, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, h * w, h, w, dtype=torch.float64)
    fast, = torch.autograd.grad((psa_mask(mask, psa_type, (mh, mw)) * weight).sum(), mask)
    ref, = torch.autograd.grad((psa_mask_reference(mask, psa_type, (mh, mw)) * weight).sum(), mask)
    torch.testing.assert_close(fast, ref, rtol=0, atol=0)


def test_collect_and_distribute_are_transposes():
    mask = torch.randn(1, 15, 4, 5)
    collect = psa_mask(mask, 'collect', (3, 5)).reshape(1, 20, 20)
    distribute = psa_mask(mask, 'distribute', (3, 5)).reshape(1, 20, 20)
    assert torch.equal(collect, distribute.transpose(1, 2))


# ------------------------------------------------------------------------------- the attention op
@pytest.mark.parametrize('softmax', [True, False])
@pytest.mark.parametrize('psa_type', ['collect', 'distribute'])
@pytest.mark.parametrize('h, w, mh, mw', SIZES)
def test_psa_attention_matches_mmsegmentation_formula(psa_type, h, w, mh, mw, softmax):
    g = torch.Generator().manual_seed(h * 100 + mh)
    x = torch.randn(3, 4, h, w, dtype=torch.float64, generator=g, requires_grad=True)
    mask = (2 * torch.randn(3, mh * mw, h, w, dtype=torch.float64, generator=g)).requires_grad_()
    upstream = torch.randn(3, 4, h, w, dtype=torch.float64, generator=g)
    ref = psa_attention_reference(x, mask, psa_type, (mh, mw), softmax)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), (x, mask))
    for chunk in (1, 3, None):  # one pixel per chunk, chunks that do not divide N, one chunk
        out = psa_attention(x, mask, psa_type, (mh, mw), softmax, chunk_size=chunk)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        grads = torch.autograd.grad((out * upstream).sum(), (x, mask))
        for got, expected in zip(grads, ref_grads):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('psa_type', ['collect', 'distribute'])
def test_psa_attention_gradcheck(psa_type):
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, m: psa_attention(a, m, psa_type, (2, 3), chunk_size=4), (x, mask))


def test_psa_attention_holds_no_n_by_n_for_backward():
    """What the op keeps for backward: x, the mask, the output, a log-sum-exp; never an (N, N) block."""
    x = torch.randn(1, 8, 16, 16, requires_grad=True)
    mask = torch.randn(1, 25, 16, 16, requires_grad=True)  # 5x5 masks: the mask is smaller than N x N
    n = 16 * 16
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = psa_attention(x, mask, 'distribute', (5, 5))
    assert max(saved) <= mask.numel() < n * n
    out.sum().backward()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        psa_attention_reference(x, mask, 'distribute', (5, 5))
    assert max(saved) >= n * n  # mmsegmentation's formula keeps the buffer and its softmax


def test_psa_attention_in_bf16_autocast_stays_close():
    x = torch.randn(2, 8, 6, 7, requires_grad=True)
    mask = torch.randn(2, 35, 6, 7, requires_grad=True)
    for psa_type in ('collect', 'distribute'):
        expected = psa_attention(x, mask, psa_type, (5, 7))
        grads = torch.autograd.grad(expected.square().sum(), (x, mask))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = psa_attention(x, mask, psa_type, (5, 7))
        assert low.dtype == torch.bfloat16
        assert ((low.float() - expected).norm() / expected.norm()).item() < 3e-2
        for got, ref in zip(torch.autograd.grad(low.float().square().sum(), (x, mask)), grads):
            assert got.dtype == torch.float32 and ((got - ref).norm() / ref.norm()).item() < 5e-2


def test_psa_attention_weights_are_the_softmaxed_buffer():
    mask = torch.randn(2, 12, 4, 5)
    for psa_type in ('collect', 'distribute'):
        weights = psa_attention_weights(mask, psa_type, (3, 4))  # [B, t, s]
        buffer = torch.softmax(psa_mask(mask, psa_type, (3, 4)), dim=1).reshape(2, 20, 20)  # [B, s, t]
        torch.testing.assert_close(weights, buffer.transpose(1, 2))
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 20))


def test_op_errors_name_the_problem():
    mask = torch.randn(1, 15, 4, 5)
    with pytest.raises(ValueError, match="psa_type must be 'collect' or 'distribute', got 'both'"):
        psa_mask(mask, 'both', (3, 5))
    with pytest.raises(ValueError, match=r'mask_size must be .* got \(3, 0\)'):
        psa_mask(mask, 'collect', (3, 0))
    with pytest.raises(ValueError, match=r'mask_h \* mask_w = 16.*got shape \(1, 15, 4, 5\)'):
        psa_mask(mask, 'collect', (4, 4))
    with pytest.raises(ValueError, match='x must be'):
        psa_attention(torch.randn(1, 3, 4, 6), mask, 'collect', (3, 5))
    with pytest.raises(ValueError, match='chunk_size must be a positive integer'):
        psa_attention(torch.randn(1, 3, 4, 5), mask, 'collect', (3, 5), chunk_size=0)


# ------------------------------------------------------------------------------------------ the head
def _reference_head(head: PSAHead, x: torch.Tensor) -> torch.Tensor:
    """mmsegmentation's PSAHead.forward, step by step, on the head's own layers and the dense buffer."""
    ctx = head.context
    mh, mw = ctx.mask_size
    branches = ([(ctx.reduce, ctx.attention, 'collect'), (ctx.reduce_p, ctx.attention_p, 'distribute')]
                if ctx.psa_type == 'bi-direction' else [(ctx.reduce, ctx.attention, ctx.psa_type)])
    h, w = x.shape[2:]
    align_corners = ctx.align_corners
    if ctx.shrink_factor != 1:
        if h % ctx.shrink_factor and w % ctx.shrink_factor:
            h, w, align_corners = (h - 1) // ctx.shrink_factor + 1, (w - 1) // ctx.shrink_factor + 1, True
        else:
            h, w, align_corners = h // ctx.shrink_factor, w // ctx.shrink_factor, False
    outs = []
    for reduce, attention, psa_type in branches:
        feat = reduce(x)
        if ctx.shrink_factor != 1:
            feat = F.interpolate(feat, size=(h, w), mode='bilinear', align_corners=align_corners)
        y = attention(feat)
        n = h * w
        if ctx.compact:
            transpose = psa_type == 'distribute' if ctx.psa_type == 'bi-direction' else ctx.psa_type == 'collect'
            if transpose:
                y = y.reshape(-1, n, n).transpose(1, 2).reshape(-1, n, h, w)
        else:
            y = psa_mask_reference(y, psa_type, (mh, mw))
        if ctx.psa_softmax:
            y = torch.softmax(y, dim=1)
        c = feat.shape[1]
        outs.append(torch.bmm(feat.reshape(-1, c, n), y.reshape(-1, n, n)).reshape(-1, c, h, w)
                    * (1.0 / ctx.normalization_factor))
    out = head.proj(torch.cat(outs, 1))
    out = F.interpolate(out, size=x.shape[2:], mode='bilinear', align_corners=align_corners)
    return head.cls(head.bottleneck(torch.cat([x, out], 1)))


@pytest.mark.parametrize('options, size', [
    (dict(), (7, 9)),  # both sides odd: shrunk to 4x5 with align_corners=True
    (dict(), (6, 9)),  # one even side: 3x4 with align_corners=False
    (dict(psa_type='collect', mask_size=(5, 7)), (7, 9)),
    (dict(psa_type='distribute', mask_size=(3, 3), psa_softmax=False), (8, 8)),
    (dict(shrink_factor=1, mask_size=(4, 6), align_corners=True, normalization_factor=None), (5, 6)),
    (dict(shrink_factor=3, mask_size=(2, 2)), (7, 10)),
    (dict(compact=True, mask_size=(3, 4)), (6, 8)),  # compact: the mask is the whole 3x4 map
    (dict(compact=True, mask_size=(3, 4), psa_type='collect'), (6, 8)),
    (dict(compact=True, mask_size=(4, 5), psa_type='distribute'), (7, 9)),
])
def test_head_is_mmsegmentations_forward(options, size):
    head = randomize(PSAHead(12, 8, 5, **options)).eval()
    x = torch.randn(2, 12, *size)
    with torch.no_grad():
        out = head([x])
        expected = _reference_head(head, x)
    assert set(out) == {'out'} and out['out'].shape == (2, 5, *size)
    torch.testing.assert_close(out['out'], expected, rtol=1e-5, atol=1e-5)


def test_shrink_rule_and_projection_padding():
    assert psa_shrunk_size(9, 13, 2, False) == (5, 7, True)  # neither side divides: ceil, corners aligned
    assert psa_shrunk_size(64, 128, 2, False) == (32, 64, False)
    assert psa_shrunk_size(9, 12, 2, True) == (4, 6, False)  # one side divides: floor
    assert psa_shrunk_size(97, 97, 2, False) == (49, 49, True)  # 769x769 crops: 97x97 masks reach every pixel
    assert psa_shrunk_size(5, 6, 1, True) == (5, 6, True)
    assert psa_shrunk_size(1, 4, 2, False) == (1, 2, False)  # never 0 pixels
    head = PSAHead(12, 8, 5, mask_size=(3, 3)).eval()
    seen = []
    head.proj.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    head([torch.randn(1, 12, 7, 9)])
    assert seen == [torch.Size([1, 12, 6, 7])]  # 4x5 shrunk, + 1 pixel each side from the 1x1 conv's padding


def test_head_layout_and_defaults_are_mmsegmentations():
    head = PSAHead(2048, 512, 19)
    ctx = head.context
    assert (ctx.mask_size, ctx.psa_type, ctx.compact, ctx.shrink_factor, ctx.normalization_factor,
            ctx.psa_softmax) == ((97, 97), 'bi-direction', False, 2, 1.0, True)
    assert head.context.attention[1].weight.shape == (97 * 97, 512, 1, 1)
    assert head.proj[0].padding == (1, 1) and head.proj[0].in_channels == 1024
    names = {k for k in head.state_dict() if not k.endswith('num_batches_tracked')}
    assert {'context.reduce.0.weight', 'context.attention.0.0.weight', 'context.attention.1.weight',
            'context.reduce_p.1.running_var', 'context.attention_p.1.weight', 'proj.0.weight', 'proj.1.bias',
            'bottleneck.0.weight', 'cls.1.weight'} <= names
    single = PSAHead(16, 8, 3, psa_type='collect')
    assert not hasattr(single.context, 'attention_p') and single.proj[0].in_channels == 8
    assert PSAHead(16, 8, 3, mask_size=(3, 5), normalization_factor=None).context.normalization_factor == 15.0
    assert PSAHead(16, 8, 3, mask_size=[7, 9]).context.mask_size == (7, 9)  # lists from configs


@pytest.mark.parametrize('options, message', [
    (dict(psa_type='both'), r"psa_type must be one of collect, distribute, bi-direction, got 'both'"),
    (dict(mask_size=(97,)), r'mask_size must be a pair .* got \(97,\)'),
    (dict(mask_size=(0, 3)), r'mask_size must be an integer >= 1, got 0'),
    (dict(shrink_factor=0), r'shrink_factor must be an integer >= 1, got 0'),
    (dict(shrink_factor=1.5), r'shrink_factor must be an integer >= 1, got 1.5'),
    (dict(normalization_factor=0), r'normalization_factor must be a number > 0, got 0'),
    (dict(compact='no'), r"compact must be True or False, got 'no'"),
    (dict(psa_softmax=None), r'psa_softmax must be True or False, got None'),
    (dict(align_corners=1), r'align_corners must be True or False, got 1'),
])
def test_bad_options_raise_clearly(options, message):
    with pytest.raises(ValueError, match='PSAHead: ' + message):
        PSAHead(16, 8, 3, **options)


def test_compact_needs_the_mask_to_cover_the_shrunk_map():
    head = PSAHead(16, 8, 3, compact=True, mask_size=(3, 3))
    with pytest.raises(ValueError, match=r'compact=True needs mask_h \* mask_w == h \* w .* 3x4 feature'):
        head([torch.randn(1, 16, 6, 8)])


def test_eval_is_deterministic_and_training_drops_out():
    head = randomize(PSAHead(16, 8, 3, mask_size=(5, 5)))
    x = torch.randn(2, 16, 9, 11, requires_grad=True)
    head.train()
    outs = head([x])
    assert set(outs) == set(PSAHead.outputs) == {'out'}
    outs['out'].sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters() if p.requires_grad)
    with torch.no_grad():
        assert not torch.equal(head([x])['out'], head([x])['out'])  # dropout
        head.eval()
        assert torch.equal(head([x])['out'], head([x])['out'])


def test_folding_batchnorm_keeps_the_head_exact():
    head = randomize(PSAHead(16, 8, 3, mask_size=(5, 5))).eval()
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        expected = head([x])['out']
        folded = copy.deepcopy(head)
        count = fold_batchnorm(folded)
        got = folded([x])['out']
    # reduce, attention.0 and their distribute twins, proj, bottleneck
    assert count == 6 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-5


def test_channels_last_is_exact_and_bf16_stays_close():
    head = randomize(PSAHead(16, 8, 3, mask_size=(5, 7))).eval()
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        expected = head([x])['out']
        nhwc = copy.deepcopy(head).to(memory_format=torch.channels_last)
        got = nhwc([x.contiguous(memory_format=torch.channels_last)])['out']
        assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-5
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = nhwc([x.contiguous(memory_format=torch.channels_last)])['out'].float()
        cast = copy.deepcopy(head).to(torch.bfloat16)([x.to(torch.bfloat16)])['out'].float()  # bf16 weights
    for out in (low, cast):
        assert ((out - expected).norm() / expected.norm()).item() < 3e-2


# ------------------------------------------------------------------------------------ visualisation
def test_the_visualiser_records_and_draws_collect_and_distribute(tmp_path):
    from seg.visualization.attention import AttentionRecorder, Geometry, draw_attention

    head = randomize(PSAHead(16, 8, 3, mask_size=(5, 7))).eval()
    model = nn.ModuleDict(dict(decode_head=head))
    assert isinstance(head.context, PSA)
    with AttentionRecorder(model) as rec, torch.no_grad():
        head([torch.randn(1, 16, 12, 16)])
    assert list(rec.modules) == ['decode_head.context']
    records = rec.records['decode_head.context']
    assert set(records) == {'attention', 'attention_p'}
    assert head.context.maps(records) == {}  # only maps of a point
    maps = head.context.maps(records, lambda h, w: (2, 5))
    assert set(maps) == {'collect', 'distribute'}
    collect, distribute = maps['collect'].values, maps['distribute'].values
    assert collect.shape == distribute.shape == (6, 8)  # the shrunk map
    torch.testing.assert_close(collect.sum(), torch.tensor(1.0))
    # collect: the point's own mask, softmaxed; distribute: its mask's share in every position's input
    dense_c = torch.softmax(psa_mask(records['attention'][0], 'collect', (5, 7)), dim=1).reshape(1, 48, 6, 8)
    torch.testing.assert_close(collect, dense_c[0, :, 2, 5].reshape(6, 8))
    dense_d = torch.softmax(psa_mask(records['attention_p'][0], 'distribute', (5, 7)), dim=1).reshape(1, 48, 48)
    torch.testing.assert_close(distribute, dense_d[0, 2 * 8 + 5].reshape(6, 8))
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    paths, manifest = draw_attention(rec, image, Geometry(ori=(96, 128), img=(96, 128), pad=(96, 128)), [(90, 30)],
                                     str(tmp_path), 'img')
    names = sorted(p.split('/')[-1] for p in paths)
    assert names == ['img_psa_decode_head-context_collect_x90_y30.png',
                     'img_psa_decode_head-context_distribute_x90_y30.png']
    assert len(manifest) == 2 and all(os.path.isfile(p) for p in paths)


def test_single_branch_and_compact_maps():
    for options in (dict(psa_type='distribute', mask_size=(3, 3)), dict(compact=True, mask_size=(3, 4))):
        head = randomize(PSAHead(16, 8, 3, **options)).eval()
        seen = {}
        for name in ('attention', 'attention_p'):
            if hasattr(head.context, name):
                getattr(head.context, name).register_forward_hook(
                    lambda m, i, o, name=name, seen=seen: seen.setdefault(name, []).append(o))
        with torch.no_grad():
            head([torch.randn(1, 16, 6, 8)])
            maps = head.context.maps(seen, lambda h, w: (1, 2))
        assert set(maps) == ({'distribute'} if 'psa_type' in options else {'collect', 'distribute'})
        assert all(m.kind == 'point' and m.values.shape == (3, 4) and torch.isfinite(m.values).all()
                   for m in maps.values())


@pytest.mark.slow
def test_onnx_export_keeps_both_size_rules(tmp_path):
    """The shrink rule depends on the feature's parity: the exported graph takes the rule of each input
    (an If), not only the example's, and onnxruntime gives PyTorch's logits at both parities."""
    import onnxruntime as ort

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = randomize(PSAHead(8, 8, 3, mask_size=(5, 7))).eval()

        def forward(self, x):
            return self.head([x])['out']

    model = Logits().eval()
    dims = ({2: torch.export.Dim('h', min=4, max=64), 3: torch.export.Dim('w', min=4, max=64)},)
    program = torch.onnx.export(model, (torch.randn(1, 8, 8, 12),), dynamo=True, dynamic_shapes=dims,
                                input_names=['x'], opset_version=18, verbose=False)
    program.save(str(tmp_path / 'psa.onnx'))
    session = ort.InferenceSession(str(tmp_path / 'psa.onnx'), providers=['CPUExecutionProvider'])
    for size in ((8, 12), (9, 13), (9, 12), (7, 7)):  # even, both odd (ceil, corners aligned), mixed
        x = torch.randn(1, 8, *size)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {'x': x.numpy()})[0]
        assert np.abs(got - expected).max() < 1e-4, size
