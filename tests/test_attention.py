"""Tests of the attention zoo (seg.models.attention).

The generic tests are parametrized over ``list_attention()`` and read what each module declares
(``attention_maps``, ``param_count``), so a newly registered module is tested automatically with no
table here to edit. Each module is also checked
against a plain re-computation of its paper's formula on hand-set weights, in float64; the context
blocks (non-local, criss-cross, PAM, CAM, dual) against the ``*_reference`` ops of ``seg.ops``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seg.models.attention import (
    CAM,
    CBAM,
    ECA,
    GAM,
    MAP_KINDS,
    NAM,
    PAM,
    SE,
    SK,
    SOCA,
    AttentionModule,
    CoordAttention,
    CrissCross,
    DualBlock,
    NonLocal,
    S2MLPv2,
    ShuffleAttention,
    SimAM,
    build_attention,
    channel_shuffle,
    covariance_pool,
    eca_kernel_size,
    list_attention,
    newton_schulz_sqrt,
)
from seg.ops import channel_attention_reference, criss_cross_attention_reference, position_attention_reference
from seg.registry import ATTENTION

C = 32
NAMES = list_attention()
EXPECTED = {'se': SE, 'eca': ECA, 'cbam': CBAM, 'coord': CoordAttention, 'sk': SK, 'simam': SimAM,
            'gam': GAM, 'shuffle': ShuffleAttention, 'nam': NAM, 'soca': SOCA, 's2mlpv2': S2MLPv2,
            'nonlocal': NonLocal, 'criss_cross': CrissCross, 'pam': PAM, 'cam': CAM, 'dual': DualBlock}
# The context blocks: residual (identity at initialisation), attention maps never a module output.
CONTEXT = tuple(n for n in list_attention() if ATTENTION.get(n).residual)  # declared by each module


def make(name: str, channels: int = C, **kw) -> nn.Module:
    torch.manual_seed(0)
    return build_attention(name, channels, **kw)


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Hand-set every parameter and BN statistic to random values (so no gate is trivial)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if p.dim() >= 2:  # matrices and kernels: scaled by the fan-in, so no gate saturates
            p.copy_(noise / math.sqrt(p[0].numel()))
        else:  # norm scales around 1, biases around 0
            p.copy_(noise * 0.3 + (1.0 if name.endswith('weight') else 0.0))
    for name, buf in module.named_buffers():
        if name.endswith('running_mean'):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith('running_var'):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    return module


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# Plain reference pieces, written independently of the implementation.

def conv_ref(x, w, pad, dil=1, groups=1):
    """Zero-padded 2-D convolution as a sum over kernel offsets (no F.conv2d)."""
    b, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.zeros(b, o, h, wd, dtype=x.dtype)
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil:i * dil + h, j * dil:j * dil + wd]  # [B, cg, H, W]
                out[:, g * og:(g + 1) * og] += torch.einsum('bchw,oc->bohw', patch, ws[:, :, i, j])
    return out


def bn_ref(x, bn, dim=1):
    """Eval-mode batch norm along ``dim``."""
    shape = [1] * x.dim()
    shape[dim] = -1
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def shuffle_ref(x, groups):
    """Channel shuffle by an explicit index list: output i * G + g is input g * (C / G) + i."""
    c = x.shape[1]
    n = c // groups
    order = [g * n + i for i in range(n) for g in range(groups)]
    return x[:, order]


def double_input(b=2, h=7, w=9, c=C, seed=1):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# The one interface.

def test_registry_names_and_classes():
    assert set(EXPECTED) <= set(NAMES)
    for name, cls in EXPECTED.items():
        assert ATTENTION.get(name) is cls
        assert type(make(name)) is cls


def test_build_from_dict_and_overrides():
    m = build_attention(dict(type='se', reduction=8), 64)
    assert isinstance(m, SE) and m.fc1.out_features == 8
    m = build_attention(dict(type='se', reduction=8), 64, reduction=4)
    assert m.fc1.out_features == 16
    m = build_attention(dict(type='se', channels=64), 64)
    assert m.fc1.in_features == 64
    cfg = dict(type='cbam', reduction=4)
    build_attention(cfg, 32)
    assert cfg == dict(type='cbam', reduction=4)  # the config is not consumed
    assert isinstance(build_attention(dict(type=SOCA, reduction=4), 32), SOCA)  # a registered class
    m = ATTENTION.build(dict(type='eca', channels=32, kernel_size=5))
    assert m.conv.kernel_size == (5,)


def test_build_errors():
    with pytest.raises(ValueError, match="unknown attention type 'nope'.*cbam.*se"):
        build_attention('nope', 32)
    with pytest.raises(ValueError, match="no 'type'"):
        build_attention(dict(reduction=8), 32)
    with pytest.raises(ValueError, match='has no option.*ratio.*options are: reduction'):
        build_attention('se', 32, ratio=4)
    with pytest.raises(ValueError, match='channels=16 but channels=32'):
        build_attention(dict(type='se', channels=16), 32)
    with pytest.raises(ValueError, match='unknown attention type'):
        build_attention(dict(type=nn.Conv2d), 32)
    with pytest.raises(ValueError, match='name or a config dict'):
        build_attention(3, 32)
    with pytest.raises(ValueError, match="unknown registry type|unknown attention type"):
        ATTENTION.get('nope')


@pytest.mark.parametrize('name', NAMES)
def test_wrong_input_shape(name):
    m = make(name)
    with pytest.raises(ValueError, match=f'\\(B, {C}, H, W\\)'):
        m(torch.randn(2, C + 1, 5, 5))
    with pytest.raises(ValueError, match='got shape'):
        m(torch.randn(C, 5, 5))


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('channels', [0, -4, True, 2.0])
def test_bad_channels(name, channels):
    with pytest.raises(ValueError, match='channels'):
        build_attention(name, channels)


@pytest.mark.parametrize('name, kw, match', [
    ('se', dict(reduction=64), 'reduction must be <= channels'),
    ('se', dict(reduction=0), 'reduction must be an integer >= 1'),
    ('eca', dict(kernel_size=4), 'kernel_size must be odd'),
    ('eca', dict(kernel_size=0), 'kernel_size must be an integer >= 1'),
    ('eca', dict(gamma=0), 'gamma must be a number > 0'),
    ('cbam', dict(reduction=33), 'reduction must be <= channels'),
    ('cbam', dict(spatial_kernel=6), 'spatial_kernel must be odd'),
    ('coord', dict(reduction=0), 'reduction must be an integer'),
    ('sk', dict(kernels=(3,)), 'at least two'),
    ('sk', dict(kernels=(3, 4)), 'must be odd'),
    ('sk', dict(kernels='35'), 'sequence'),
    ('sk', dict(groups=5), 'divisible by groups'),
    ('simam', dict(e_lambda=-1.0), 'e_lambda must be a number > 0'),
    ('gam', dict(rate=5), 'divisible by rate'),
    ('gam', dict(groups=3), 'divisible by groups'),
    ('gam', dict(spatial_kernel=4), 'spatial_kernel must be odd'),
    ('shuffle', dict(groups=3), 'divisible by 2 \\* groups'),
    ('shuffle', dict(groups=64), 'channels=32, groups=64'),
    ('nam', dict(spatial=True), 'spatial_size=\\(H, W\\)'),
    ('nam', dict(spatial=True, spatial_size=(0, 4)), 'spatial_size\\[0\\]'),
    ('soca', dict(reduction=64), 'reduction must be <= channels'),
    ('soca', dict(iterations=0), 'iterations must be an integer >= 1'),
    ('nonlocal', dict(reduction=33), 'NonLocal: reduction must be <= channels'),
    ('nonlocal', dict(reduction=0), 'reduction must be an integer >= 1'),
    ('nonlocal', dict(mode='cosine'), 'mode must be one of embedded_gaussian, gaussian'),
    ('nonlocal', dict(norm='LN'), "norm must be one of BN.*got 'LN'"),
    ('nonlocal', dict(use_scale=1), 'use_scale must be a bool'),
    ('nonlocal', dict(query_chunk=0), 'query_chunk must be an integer >= 1'),
    ('criss_cross', dict(reduction=64), 'CrissCross: reduction must be <= channels'),
    ('criss_cross', dict(recurrence=0), 'recurrence must be an integer >= 1'),
    ('criss_cross', dict(recurrence=2.0), 'recurrence must be an integer >= 1'),
    ('pam', dict(reduction=33), 'PAM: reduction must be <= channels'),
    ('pam', dict(reduction=True), 'reduction must be an integer >= 1'),
    ('cam', dict(reduction=8), 'no option.*reduction.*options are: \\(none\\)'),
    ('dual', dict(reduction=64), 'DualBlock: reduction must be <= channels'),
])
def test_impossible_options(name, kw, match):
    with pytest.raises(ValueError, match=match):
        build_attention(name, C, **kw)


# ---------------------------------------------------------------------------------------------
# Generic behaviour of every registered module.

@pytest.mark.parametrize('name', NAMES)
def test_shape_odd_size_train(name):
    m = make(name).train()
    x = torch.randn(2, C, 7, 9)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize('name', NAMES)
def test_backward(name):
    m = randomize(make(name)).train()
    x = torch.randn(2, C, 7, 9, requires_grad=True)
    y = m(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('hw', [(1, 1), (1, 9), (7, 1), (7, 9)])
def test_batch1_eval_any_size(name, hw):
    m = randomize(make(name)).eval()
    x = torch.randn(1, C, *hw)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('hw', [(1, 9), (7, 1)])
def test_thin_maps_train(name, hw):
    m = randomize(make(name)).train()
    x = torch.randn(2, C, *hw, requires_grad=True)
    y = m(x)
    y.square().sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize('name', NAMES)
def test_bf16_autocast(name):
    m = randomize(make(name)).eval()
    x = torch.randn(2, C, 7, 9)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    err = (y.float() - ref).abs().max() / ref.abs().max()
    assert err < 5e-2, f'{name}: bf16 relative error {err:.3g}'


@pytest.mark.parametrize('name', NAMES)
def test_torch_export(name):
    # Every module of the zoo exports (static shapes); SOCA's autocast-off region included.
    m = randomize(make(name)).eval()
    x = torch.randn(2, C, 7, 9)
    program = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), m(x), rtol=1e-5, atol=1e-5)


def record_declared(m: AttentionModule) -> dict[str, list[torch.Tensor]]:
    """Forward hooks on what the module declares in ``attention_maps``."""
    seen: dict[str, list[torch.Tensor]] = {}
    for sub in m.attention_maps:
        try:
            target = m if sub == '' else m.get_submodule(sub)
        except AttributeError:  # an optional branch this instance does not have (NAM without spatial)
            continue
        target.register_forward_hook(
            lambda mod, i, o, sub=sub: seen.setdefault(sub, []).append((i[0] if sub == '' else o).detach()))
    return seen


@pytest.mark.parametrize('name', NAMES)
def test_declared_maps_are_hookable_and_drawable(name):
    m = make(name).eval()
    assert isinstance(m, AttentionModule)
    assert set(m.attention_maps.values()) <= set(MAP_KINDS), m.attention_maps
    seen = record_declared(m)
    recurrence = getattr(m, 'recurrence', 1)
    m(torch.randn(2, C, 7, 9))
    for sub, kind in m.attention_maps.items():
        if sub not in seen:
            continue
        assert len(seen[sub]) == (recurrence if kind in ('query', 'key') else 1), sub
        for v in seen[sub]:
            assert v.shape[0] == 2 and torch.isfinite(v).all()
            if kind in ('channel', 'spatial', 'branch'):  # gate outputs are weights
                assert (v >= 0).all() and (v <= 1).all(), sub
    maps = {**m.maps(seen), **m.maps(seen, lambda h, w: (3, 4))}
    has_maps = m.attention_maps or any(isinstance(c, AttentionModule) and c.attention_maps for c in m.children())
    assert maps or (has_maps and not m.attention_maps), f'{name} declares maps but draws none'
    for key, amap in maps.items():
        shape = {'channel': 1, 'branch': 2, 'spatial': 2, 'point': 2}[amap.kind]
        assert amap.values.dim() == shape and torch.isfinite(amap.values).all(), key
        if amap.kind in ('spatial', 'point'):
            assert tuple(amap.values.shape) == (7, 9), key
        if amap.kind == 'channel':
            assert amap.values.numel() in (C, C // 2), key


# ---------------------------------------------------------------------------------------------
# Parameter counts against the papers' formulas.

def _qkv_params(c, r=8):
    """Query and key 1x1 convs C -> C/r, value C -> C (all with bias), and gamma."""
    return 2 * (c * (c // r) + c // r) + c * c + c + 1


# Hand-computed counts beside the modules' own formulas, for options other than the defaults.
OPTION_CASES = {
    'se': [(dict(reduction=8), lambda c: 2 * c * c // 8)],
    'eca': [(dict(kernel_size=5), lambda c: 5)],
    'cbam': [(dict(spatial_kernel=3), lambda c: 2 * c * c // 16 + 2 * 9)],
    'coord': [(dict(reduction=4), lambda c: (c * (c // 4) + c // 4) + 2 * (c // 4) + 2 * ((c // 4) * c + c))],
    'sk': [(dict(kernels=(1, 3, 5, 7)), lambda c: sum(c * c * k * k + 2 * c for k in (1, 3, 5, 7))
            + c * max(c // 16, 32) + 2 * max(c // 16, 32) + 4 * max(c // 16, 32) * c),
           (dict(squeeze_norm=False), lambda c: sum(c * c * k * k + 2 * c for k in (3, 5)) + c * 32 + 32
            + 2 * 32 * c)],
    'shuffle': [(dict(groups=4), lambda c: 3 * c // 4), (dict(groups=8), lambda c: 3 * c // 8)],
    'nam': [(dict(spatial=True, spatial_size=(5, 6)), lambda c: 2 * c + 2 * 30)],
    'nonlocal': [(dict(mode='gaussian'), lambda c: (c * (c // 2) + c // 2) + (c // 2) * c + 2 * c)],
    # the R passes share one set of weights
    'criss_cross': [(dict(recurrence=3, reduction=4), lambda c: _qkv_params(c, 4))],
    'dual': [(dict(reduction=4), lambda c: _qkv_params(c, 4) + 1)],
}
"""Optional extra cases: a module without an entry is still checked at its defaults."""


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('channels', [64, 256])
def test_param_counts(name, channels):
    cls = ATTENTION.get(name)
    expected = cls.param_count(channels)
    if expected is not None:
        assert params(build_attention(name, channels)) == expected, name
    for kw, formula in OPTION_CASES.get(name, []):
        assert params(build_attention(name, channels, **kw)) == formula(channels) == cls.param_count(channels, **kw), \
            (name, kw)


def test_param_formulas_by_hand():
    """A few counts written out, so the formulas are not only checked against themselves."""
    assert SE.param_count(64) == 2 * 64 * 4 == 512
    assert CBAM.param_count(64) == 512 + 98
    assert ECA.param_count(64) == 3 and ECA.param_count(256) == 5
    assert CrissCross.param_count(64) == 2 * (64 * 8 + 8) + 64 * 64 + 64 + 1 == 5201
    assert PAM.param_count(64) == 5201 and CAM.param_count(64) == 1 and DualBlock.param_count(64) == 5202
    assert NonLocal.param_count(64) == 3 * (64 * 32 + 32) + 32 * 64 + 2 * 64 == 8416
    assert S2MLPv2.param_count(64) == 8 * 64 * 64 + 4 * 64 and SimAM.param_count(64) == 0
    assert ShuffleAttention.param_count(128) == 3 * 128 // 64


@pytest.mark.parametrize('channels, k', [(1, 1), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5),
                                         (512, 5), (1024, 5), (2048, 7)])
def test_eca_adaptive_kernel(channels, k):
    t = abs(math.log2(channels) / 2 + 1 / 2)
    nearest_odd = min(range(1, 16, 2), key=lambda o: (abs(o - t), -o))  # ties go up
    assert eca_kernel_size(channels) == k == nearest_odd
    assert ECA(channels).conv.kernel_size == (k,)


# ---------------------------------------------------------------------------------------------
# Each module against its paper's formula on hand-set weights (float64).

def test_se_reference():
    m = randomize(SE(C, reduction=8)).double()
    x = double_input()
    w1, w2 = m.fc1.weight, m.fc2.weight  # [C/r, C], [C, C/r]
    s = x.mean(dim=(2, 3))
    ref = x * torch.sigmoid(torch.relu(s @ w1.T) @ w2.T)[:, :, None, None]
    torch.testing.assert_close(m(x), ref)


def test_eca_reference():
    m = ECA(C, kernel_size=3).double()
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([[[0.5, -1.0, 2.0]]]))
    x = double_input()
    s = x.mean(dim=(2, 3))
    y = torch.zeros_like(s)
    for c in range(C):  # y_c = 0.5 s_{c-1} - s_c + 2 s_{c+1}, zero outside [0, C)
        y[:, c] = -s[:, c] + (0.5 * s[:, c - 1] if c > 0 else 0) + (2 * s[:, c + 1] if c < C - 1 else 0)
    torch.testing.assert_close(m(x), x * torch.sigmoid(y)[:, :, None, None])


def test_cbam_reference():
    m = randomize(CBAM(C, reduction=4)).double()
    x = double_input()
    w0, w1 = m.channel_gate.fc1.weight, m.channel_gate.fc2.weight

    def mlp(v):
        return torch.relu(v @ w0.T) @ w1.T

    mc = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))[:, :, None, None]
    x1 = x * mc
    desc = torch.cat([x1.mean(dim=1, keepdim=True), x1.amax(dim=1, keepdim=True)], dim=1)  # [avg; max]
    ms = torch.sigmoid(conv_ref(desc, m.spatial_gate.conv.weight, pad=3))
    torch.testing.assert_close(m(x), x1 * ms)


def test_coord_reference():
    m = randomize(CoordAttention(C, reduction=2)).double().eval()
    x = double_input()
    h = x.shape[2]
    y = torch.cat([x.mean(dim=3), x.mean(dim=2)], dim=2)  # [B, C, H + W]
    y = torch.einsum('mc,bcl->bml', m.conv1.weight[:, :, 0, 0], y) + m.conv1.bias[:, None]
    y = bn_ref(y, m.bn1)
    y = y * torch.clamp(y + 3, 0, 6) / 6  # h-swish
    g_h = torch.sigmoid(torch.einsum('cm,bml->bcl', m.conv_h.weight[:, :, 0, 0], y[:, :, :h])
                        + m.conv_h.bias[:, None])  # [B, C, H]
    g_w = torch.sigmoid(torch.einsum('cm,bml->bcl', m.conv_w.weight[:, :, 0, 0], y[:, :, h:])
                        + m.conv_w.bias[:, None])  # [B, C, W]
    torch.testing.assert_close(m(x), x * g_h[:, :, :, None] * g_w[:, :, None, :])
    assert m.mid_channels == 16 and CoordAttention(C).mid_channels == 8  # max(8, C // r)


@pytest.mark.parametrize('kw, convs', [
    (dict(), [(3, 1), (5, 1)]),
    (dict(kernels=(1, 3, 5, 7), groups=2), [(1, 1), (3, 1), (5, 1), (7, 1)]),
    (dict(dilated=True), [(3, 1), (3, 2)]),
])
def test_sk_reference(kw, convs):
    m = randomize(SK(C, **kw)).double().eval()
    x = double_input(h=6, w=5)
    groups = kw.get('groups', 1)
    u = []
    for (k, dil), branch in zip(convs, m.branches):
        assert branch[0].weight.shape[-1] == k
        u.append(torch.relu(bn_ref(conv_ref(x, branch[0].weight, dil * (k // 2), dil, groups), branch[1])))
    s = sum(u).mean(dim=(2, 3))  # [B, C]
    z = torch.relu(bn_ref(s @ m.squeeze[0].weight.T, m.squeeze[1]))  # [B, d], d = max(C // 16, 32)
    assert z.shape[1] == 32
    logits = (z @ m.select.weight.T).view(2, len(convs), C)  # one C x d matrix per branch
    a = torch.softmax(logits, dim=1)
    ref = sum(a[:, i, :, None, None] * u[i] for i in range(len(convs)))
    torch.testing.assert_close(m(x), ref)


def test_sk_batch1_train_needs_no_squeeze_norm():
    with pytest.raises(ValueError, match='more than 1 value per channel'):
        SK(C).train()(torch.randn(1, C, 4, 4))
    assert SK(C, squeeze_norm=False).train()(torch.randn(1, C, 4, 4)).shape == (1, C, 4, 4)


def test_simam_reference():
    m = SimAM(C, e_lambda=1e-3)
    x = double_input()
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=True)  # normalised by n = H W - 1
    inv_e = (x - mu) ** 2 / (4 * (var + 1e-3)) + 0.5
    torch.testing.assert_close(m(x), x * torch.sigmoid(inv_e))
    one = double_input(h=1, w=1)
    torch.testing.assert_close(m(one), one * torch.sigmoid(torch.tensor(0.5, dtype=torch.float64)))
    assert SimAM()(torch.randn(1, 3, 4, 4)).shape == (1, 3, 4, 4)  # channels=None: any
    half = torch.randn(2, C, 5, 5).bfloat16()
    torch.testing.assert_close(m(half).float(), m(half.float()), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize('groups', [1, 2])
def test_gam_reference(groups):
    m = randomize(GAM(C, rate=4, groups=groups)).double().eval()
    x = double_input()
    lin1, lin2 = m.mlp[0], m.mlp[2]
    pix = x.permute(0, 2, 3, 1)  # every pixel's channel vector
    att = torch.relu(pix @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    x1 = x * torch.sigmoid(att.permute(0, 3, 1, 2))
    y = torch.relu(bn_ref(conv_ref(x1, m.conv1.weight, 3, groups=groups), m.bn1))
    if groups > 1:
        y = shuffle_ref(y, groups)
    ms = torch.sigmoid(bn_ref(conv_ref(y, m.conv2.weight, 3, groups=groups), m.bn2))
    torch.testing.assert_close(m(x), x1 * ms)


def test_channel_shuffle():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    torch.testing.assert_close(channel_shuffle(double_input(c=12), 4), shuffle_ref(double_input(c=12), 4))
    with pytest.raises(ValueError, match='not divisible'):
        channel_shuffle(x, 5)


def test_shuffle_attention_reference():
    groups = 4
    m = randomize(ShuffleAttention(C, groups=groups)).double()
    x = double_input()
    per, half = C // groups, C // (2 * groups)
    pre = torch.empty_like(x)
    for g in range(groups):
        for j in range(half):
            c0, c1 = g * per + j, g * per + half + j  # channel-branch and spatial-branch channels
            a = x[:, c0]
            pre[:, c0] = a * torch.sigmoid(m.cweight.flatten()[j] * a.mean(dim=(1, 2), keepdim=True)
                                           + m.cbias.flatten()[j])
            s = x[:, c1]
            mu, var = s.mean(dim=(1, 2), keepdim=True), s.var(dim=(1, 2), keepdim=True, unbiased=False)
            n = (s - mu) / torch.sqrt(var + m.gn.eps) * m.gn.weight[j] + m.gn.bias[j]  # GN, 1 channel/group
            pre[:, c1] = s * torch.sigmoid(m.sweight.flatten()[j] * n + m.sbias.flatten()[j])
    torch.testing.assert_close(m(x), shuffle_ref(pre, 2))


def test_nam_reference():
    m = randomize(NAM(C)).double().eval()
    x = double_input()
    gamma = m.bn.weight
    w = gamma.abs() / gamma.abs().sum()
    ref = x * torch.sigmoid(bn_ref(x, m.bn) * w[None, :, None, None])
    y = m(x)
    torch.testing.assert_close(y, ref)
    # gamma is trained through w_gamma as well as through BN (not detached as in the seed code).
    r = torch.randn_like(x)
    (grad,) = torch.autograd.grad((y * r).sum(), m.bn.weight)
    (grad_ref,) = torch.autograd.grad((ref * r).sum(), m.bn.weight)
    torch.testing.assert_close(grad, grad_ref)


def test_nam_spatial_reference():
    m = randomize(NAM(C, spatial=True, spatial_size=(7, 9))).double().eval()
    x = double_input()
    gamma, lam = m.bn.weight, m.bn_spatial.weight
    x1 = x * torch.sigmoid(bn_ref(x, m.bn) * (gamma.abs() / gamma.abs().sum())[None, :, None, None])
    bs = m.bn_spatial
    ref = torch.empty_like(x1)
    for p in range(7 * 9):  # pixel (i, j) is BN_s channel p = i * W + j
        i, j = divmod(p, 9)
        v = (x1[:, :, i, j] - bs.running_mean[p]) / torch.sqrt(bs.running_var[p] + bs.eps) * lam[p] + bs.bias[p]
        ref[:, :, i, j] = x1[:, :, i, j] * torch.sigmoid(v * lam[p].abs() / lam.abs().sum())
    torch.testing.assert_close(m(x), ref)
    with pytest.raises(ValueError, match=r'built for inputs of size \(7, 9\), got \(7, 8\)'):
        m(double_input(w=8))
    m.train()
    y = m(double_input().requires_grad_())
    (y.sum() + 1e-3 * m.sparsity_penalty()).backward()
    assert m.bn.weight.grad.abs().sum() > 0 and m.bn_spatial.weight.grad.abs().sum() > 0


def _ns_ref(sigma, n, eps):
    """Newton-Schulz square root as in the paper, one matrix at a time."""
    eye = torch.eye(sigma.shape[0], dtype=sigma.dtype)
    tr = torch.trace(sigma) + eps
    y, z = sigma / tr, eye
    for _ in range(n):
        y, z = 0.5 * y @ (3 * eye - z @ y), 0.5 * (3 * eye - z @ y) @ z
    return y * math.sqrt(tr)


def test_soca_reference():
    m = randomize(SOCA(C, reduction=8)).double()
    x = double_input()
    b, c, h, w = x.shape
    mm = h * w
    i_hat = (torch.eye(mm, dtype=x.dtype) - torch.ones(mm, mm, dtype=x.dtype) / mm) / mm
    z = []
    for k in range(b):
        xk = x[k].reshape(c, mm)
        sigma = xk @ i_hat @ xk.T  # the paper's covariance pooling
        torch.testing.assert_close(covariance_pool(x)[k], sigma)
        z.append(_ns_ref(sigma, 5, m.eps).mean(dim=1))  # row means
    z = torch.stack(z)  # [B, C]
    hid = torch.relu(z @ m.conv_down.weight[:, :, 0, 0].T + m.conv_down.bias)
    gate = torch.sigmoid(hid @ m.conv_up.weight[:, :, 0, 0].T + m.conv_up.bias)
    torch.testing.assert_close(m(x), x * gate[:, :, None, None])


def test_soca_sqrt_converges_and_runs_in_float32():
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    sigma = (q @ torch.diag(torch.linspace(1, 2, 8, dtype=torch.float64)) @ q.T)[None]
    root = newton_schulz_sqrt(sigma, iterations=20, eps=1e-12)
    evals, evecs = torch.linalg.eigh(sigma[0])
    torch.testing.assert_close(root[0], evecs @ torch.diag(evals.sqrt()) @ evecs.T)
    # Under bf16 autocast the statistic reaching the gate equals the float32 one.
    m = randomize(SOCA(C)).eval()
    x = torch.randn(2, C, 7, 9)
    seen = []
    m.conv_down.register_forward_hook(lambda mod, i, o: seen.append(i[0]))
    with torch.no_grad():
        m(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            m(x)
    assert seen[1].dtype == torch.float32
    torch.testing.assert_close(seen[1], seen[0], rtol=1e-5, atol=1e-6)


def _shift_ref(t, dim, step):
    """out[i] = t[clamp(i - step)] along dim (the vacated border keeps its value)."""
    n = t.shape[dim]
    idx = torch.clamp(torch.arange(n) - step, 0, n - 1)
    return t.index_select(dim, idx)


def test_s2mlpv2_reference():
    m = randomize(S2MLPv2(C)).double()
    x = double_input()
    q = C // 4
    y = x.permute(0, 2, 3, 1) @ m.expand.weight.T + m.expand.bias  # [B, H, W, 3C]
    p1, p2, p3 = y[..., :C], y[..., C:2 * C], y[..., 2 * C:]
    moves1 = [(1, 1), (1, -1), (2, 1), (2, -1)]  # down, up, right, left
    moves2 = [(2, 1), (2, -1), (1, 1), (1, -1)]  # right, left, down, up
    p1 = torch.cat([_shift_ref(p1[..., i * q:(i + 1) * q], *moves1[i]) for i in range(4)], dim=-1)
    p2 = torch.cat([_shift_ref(p2[..., i * q:(i + 1) * q], *moves2[i]) for i in range(4)], dim=-1)
    a = (p1 + p2 + p3).mean(dim=(1, 2))  # [B, C]
    sa = m.split_attention
    hat = F.gelu(a @ sa.fc1.weight.T) @ sa.fc2.weight.T  # [B, 3C]
    bar = torch.softmax(hat.view(2, 3, C), dim=1)
    mixed = sum(bar[:, k, None, None, :] * p for k, p in enumerate((p1, p2, p3)))
    ref = (mixed @ m.project.weight.T + m.project.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), ref)
    # The channel argument is honoured (the seed code hard-wired 512 inside split attention).
    assert S2MLPv2(48).split_attention.fc1.in_features == 48


# ---------------------------------------------------------------------------------------------
# The context blocks, against the reference ops of seg.ops on hand-set weights (float64).

def conv1x1_ref(x, conv):
    """A 1x1 convolution with bias as a per-pixel matrix product."""
    y = torch.einsum('oc,bchw->bohw', conv.weight[:, :, 0, 0], x)  # [B, O, H, W]
    return y + conv.bias[:, None, None]


def set_gamma(module, value):
    with torch.no_grad():
        module.gamma.fill_(value)


def qkv_attention_ref(m, x, op):
    """``gamma * op(q, k, v) + x`` of a query / key / value block (PAM, one criss-cross pass)."""
    return m.gamma * op(conv1x1_ref(x, m.query), conv1x1_ref(x, m.key), conv1x1_ref(x, m.value)) + x


def test_one_class_per_context_concept():
    """Each mechanism is one registered class, used as standalone module, head context and plug-in."""
    from seg.models.heads import CCHead, DAHead, NLHead

    assert type(CCHead(16, 16, 2).context) is CrissCross and type(NLHead(16, 16, 2).context) is NonLocal
    da = DAHead(16, 16, 2)
    assert type(da.pam) is PAM and type(da.cam) is CAM
    assert type(DualBlock(16).pam) is PAM and type(DualBlock(16).cam) is CAM
    for cls in (CrissCross, NonLocal, PAM, CAM, DualBlock):
        assert cls.__mro__[1] is AttentionModule, cls


@pytest.mark.parametrize('name', sorted(CONTEXT))
def test_context_blocks_start_as_residual_identity(name):
    m = make(name).eval()
    x = torch.randn(2, C, 5, 6)
    with torch.no_grad():
        y = m(x)
    # PAM, CAM, criss-cross, dual: gamma = 0; non-local: the norm after W_z starts at 0
    torch.testing.assert_close(y, x)


def test_pam_reference():
    m = randomize(PAM(C, reduction=4)).double()
    set_gamma(m, 0.7)
    x = double_input()
    ref = qkv_attention_ref(m, x, lambda q, k, v: position_attention_reference(q, k, v, scale=1.0))
    torch.testing.assert_close(m(x), ref)


def test_cam_reference():
    m = CAM(C).double()
    set_gamma(m, -0.6)
    x = double_input()
    torch.testing.assert_close(m(x), -0.6 * channel_attention_reference(x) + x)


@pytest.mark.parametrize('recurrence', [1, 2, 3])
def test_criss_cross_reference(recurrence):
    m = randomize(CrissCross(C, recurrence=recurrence, reduction=4)).double()
    set_gamma(m, 0.8)
    x = double_input(h=5, w=6)
    ref = x
    for _ in range(recurrence):  # the same weights in every pass
        ref = qkv_attention_ref(m, ref, criss_cross_attention_reference)
    calls = []
    m.query.register_forward_hook(lambda mod, i, o: calls.append(o))
    torch.testing.assert_close(m(x), ref)
    assert len(calls) == recurrence
    assert params(m) == params(CrissCross(C, recurrence=1, reduction=4))  # independent of R


def test_recurrent_criss_cross_block():
    assert CrissCross(C).recurrence == 2 and 'recurrence=2' in repr(CrissCross(C))
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match='recurrence must be an integer >= 1'):
            CrissCross(C, recurrence=bad)
    with pytest.raises(ValueError, match='reduction'):
        CrissCross(C, reduction=64)


def test_dual_reference():
    m = randomize(DualBlock(C, reduction=4)).double()
    set_gamma(m.pam, 0.5)
    set_gamma(m.cam, -0.3)
    x = double_input()
    pam = qkv_attention_ref(m.pam, x, lambda q, k, v: position_attention_reference(q, k, v, scale=1.0))
    torch.testing.assert_close(m(x), pam + (-0.3 * channel_attention_reference(x) + x) - x)


@pytest.mark.parametrize('kw, scale', [(dict(), 1 / math.sqrt(C // 4)), (dict(use_scale=False), 1.0),
                                       (dict(mode='gaussian'), 1.0)])
def test_nonlocal_reference(kw, scale):
    m = randomize(NonLocal(C, reduction=4, **kw)).double().eval()  # BN scale hand-set, not 0
    x = double_input()
    g = conv1x1_ref(x, m.g)
    if kw.get('mode') == 'gaussian':
        y = position_attention_reference(x, x, g, scale=scale)
    else:
        y = position_attention_reference(conv1x1_ref(x, m.theta), conv1x1_ref(x, m.phi), g, scale=scale)
    z = torch.einsum('oc,bchw->bohw', m.conv_out.weight[:, :, 0, 0], y)  # [B, C, H, W], W_z bias-free
    torch.testing.assert_close(m(x), x + bn_ref(z, m.norm))


def test_context_maps_from_hooked_tensors():
    """Hooked query / key / value tensors are enough to rebuild each block's attention maps and, from
    them, its output."""
    x = double_input(h=5, w=6)

    def record(m, taps):
        seen = {}
        for tap in taps:
            m.get_submodule(tap).register_forward_hook(lambda mod, i, o, tap=tap: seen.__setitem__(tap, o))
        return seen

    def check_rows(a):  # every query's weights: a distribution over the pixels it sees
        assert (a >= 0).all() and (a <= 1).all()
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))

    # PAM: the (N x N) map softmax(q^T k), applied to v
    m = randomize(PAM(C)).double()
    seen = record(m, ('query', 'key', 'value'))
    y = m(x)
    q, k, v = (seen[t].flatten(2) for t in ('query', 'key', 'value'))  # [B, C', N]
    a = torch.softmax(torch.einsum('bci,bcj->bij', q, k), dim=-1)  # [B, N, N]
    check_rows(a)
    torch.testing.assert_close(y, m.gamma * torch.einsum('bij,bcj->bci', a, v).reshape(x.shape) + x)

    # non-local: softmax(theta^T phi / sqrt(Ci)) applied to g, then W_z and the norm
    m = randomize(NonLocal(C)).double().eval()
    seen = record(m, ('theta', 'phi', 'g'))
    y = m(x)
    theta, phi, g = (seen[t].flatten(2) for t in ('theta', 'phi', 'g'))  # [B, Ci, N]
    a = torch.softmax(torch.einsum('bci,bcj->bij', theta, phi) / math.sqrt(C // 2), dim=-1)  # [B, N, N]
    check_rows(a)
    z = torch.einsum('bij,bcj->bci', a, g).reshape(2, C // 2, 5, 6)  # [B, Ci, H, W]
    torch.testing.assert_close(y, x + m.norm(m.conv_out(z)))

    # CAM: the (C x C) map from the input alone
    m = CAM(C).double()
    set_gamma(m, 0.4)
    flat = x.flatten(2)  # [B, C, N]
    energy = torch.einsum('bcn,bdn->bcd', flat, flat)  # [B, C, C]
    a = torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
    check_rows(a)
    torch.testing.assert_close(m(x), 0.4 * torch.einsum('bcd,bdn->bcn', a, flat).reshape(x.shape) + x)

    # criss-cross, one pass: per pixel, a distribution over its column and row (itself once)
    m = randomize(CrissCross(C, recurrence=1)).double()
    seen = record(m, ('query', 'key', 'value'))
    y = m(x)
    q, k, v = (seen[t] for t in ('query', 'key', 'value'))
    out = torch.zeros_like(x)
    for i in range(5):
        for j in range(6):
            mask = torch.zeros(5, 6, dtype=torch.bool)
            mask[i, :], mask[:, j] = True, True
            logits = torch.einsum('bc,bcn->bn', q[:, :, i, j], k[:, :, mask])  # [B, H + W - 1]
            a = torch.softmax(logits, dim=-1)
            check_rows(a)
            out[:, :, i, j] = torch.einsum('bn,bcn->bc', a, v[:, :, mask])
    torch.testing.assert_close(y, m.gamma * out + x)


WIDTHS = (16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048)


@pytest.mark.parametrize('channels', WIDTHS)
@pytest.mark.parametrize('name', NAMES)
def test_default_options_build_and_run_at_every_width(name, channels):
    """Any module can be swapped into any layer with one setting changed: the defaults fit every width."""
    module = build_attention(name, channels).eval()
    x = torch.randn(1, channels, 3, 5)
    with torch.no_grad():
        y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_shuffle_default_groups_rule(caplog):
    from seg.models.attention.shuffle import default_groups

    assert [default_groups(c) for c in WIDTHS] == [8, 16, 24, 32, 48, 64, 64, 64, 64, 64]
    assert build_attention('shuffle', 512).groups == 64  # the paper's value where it fits
    with caplog.at_level('INFO', logger='seg.models.attention.shuffle'):
        assert build_attention('shuffle', 80).groups == 40
        build_attention('shuffle', 80)
    assert sum('using 40 groups' in r.message for r in caplog.records) == 1  # said once
    with pytest.raises(ValueError, match='channels must be even'):
        build_attention('shuffle', 33)
