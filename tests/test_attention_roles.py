"""The three roles of the attention zoo: decode-head context module, backbone plug-in, configs;
and the benchmark tool.

Everything is parametrized over ``list_attention()``: a newly registered module is checked in
every role without touching this file.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

import seg.models  # noqa: F401  (registration)
from seg.analysis import attention_bench
from seg.analysis.measure import si, time_call
from seg.engine.config import load_config
from seg.models import heads as heads_module
from seg.models.attention import build_attention, eca_kernel_size, list_attention
from seg.models.backbones import DilatedResNet
from seg.models.heads import AttentionHead
from seg.registry import ATTENTION, MODELS

from .conftest import ROOT

NAMES = list_attention()
TINY = (8, 16, 32, 64)  # stage widths: Bottleneck outputs 32, 64, 128, 256
# The context modules (criss-cross, PAM, CAM, dual, non-local): residual, identity at the start.
CONTEXT = tuple(n for n in list_attention() if ATTENTION.get(n).residual)  # declared by each module
RESNET_LOGGER = 'seg.models.backbones.resnet'


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    # On the shared 2-core test machine, two OpenMP threads competing with other processes make
    # these tiny forwards 10-100x slower than one thread; restored for the other test files.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def attn_cfg(name: str) -> dict:
    return dict(type=name)


# ---------------------------------------------------------------------------------------------
# Role 1: the context module of a decode head.

def test_head_is_exported_and_registered():
    assert 'AttentionHead' in heads_module.__all__
    assert MODELS.get('AttentionHead') is AttentionHead


@pytest.mark.parametrize('name', NAMES)
def test_head_runs_every_module_between_the_convs(name):
    head = MODELS.build(dict(type='AttentionHead', in_channels=24, channels=32, num_classes=3,
                             attention=attn_cfg(name)))
    assert type(head.context) is ATTENTION.get(name)
    seen = {}
    head.conv_in.register_forward_hook(lambda m, i, o: seen.__setitem__('conv_in', o.clone()))
    head.context.register_forward_hook(lambda m, i, o: seen.__setitem__('context', (i[0].clone(), o.clone())))
    head.conv_out.register_forward_hook(lambda m, i, o: seen.__setitem__('conv_out', i[0].clone()))
    x = torch.randn(2, 24, 7, 9, requires_grad=True)
    out = head([torch.randn(2, 8, 3, 3), x])['out']  # in_index=-1 reads the last feature
    assert out.shape == (2, 3, 7, 9) and torch.isfinite(out).all()
    ctx_in, ctx_out = seen['context']
    assert torch.equal(ctx_in, seen['conv_in'])  # conv 3x3 -> attention
    assert torch.equal(ctx_out, seen['conv_out'])  # attention -> conv 3x3
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    for pname, p in head.context.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    head.eval()
    with torch.no_grad():
        assert head([torch.randn(1, 24, 5, 3)])['out'].shape == (1, 3, 5, 3)


def test_head_attention_default_string_and_dict():
    head = AttentionHead(16, 32, 2)
    assert type(head.context) is ATTENTION.get('se') and head.attention_cfg == dict(type='se')
    head = AttentionHead(16, 32, 2, attention='eca')
    assert type(head.context) is ATTENTION.get('eca') and head.attention_cfg == dict(type='eca')
    cfg = dict(type='se', reduction=4)
    head = AttentionHead(16, 32, 2, attention=cfg)
    assert head.context.fc1.out_features == 8
    assert cfg == dict(type='se', reduction=4)  # not consumed
    assert "attention={'type': 'se', 'reduction': 4}" in repr(head)
    # the same parameters as CCHead's frame around a context module: only the module differs
    bare = sum(p.numel() for n, p in head.named_parameters() if not n.startswith('context.'))
    cc = MODELS.build(dict(type='CCHead', in_channels=16, channels=32, num_classes=2))
    assert bare == sum(p.numel() for n, p in cc.named_parameters() if not n.startswith('context.'))


def test_head_bad_attention_errors():
    from seg.models.attention import list_attention

    valid = ', '.join(list_attention())
    assert valid.startswith('apnb, cam, cbam, coord, criss_cross, dnl, dual, eca')
    with pytest.raises(ValueError, match=f"unknown attention type 'nope'; valid types are: {valid}"):
        AttentionHead(16, 32, 2, attention=dict(type='nope'))
    with pytest.raises(ValueError, match='has no option.*ratio'):
        AttentionHead(16, 32, 2, attention=dict(type='se', ratio=4))
    with pytest.raises(ValueError, match='divisible by 2 \\* groups'):
        AttentionHead(16, 32, 2, attention=dict(type='shuffle', groups=64))  # 64 groups need C % 128 == 0
    with pytest.raises(ValueError, match="no 'type'"):
        AttentionHead(16, 32, 2, attention=dict(reduction=4))


def test_head_with_criss_cross_is_ccnet_head():
    # CCHead is a preset of AttentionHead(attention='criss_cross'): one class, the R passes inside
    # the module, the same state-dict keys.
    torch.manual_seed(0)
    cc = MODELS.build(dict(type='CCHead', in_channels=24, channels=32, num_classes=3, recurrence=3,
                           reduction=4))
    head = AttentionHead(24, 32, 3, attention=dict(type='criss_cross', recurrence=3, reduction=4))
    assert type(cc) is AttentionHead and cc.context.recurrence == head.context.recurrence == 3
    with torch.no_grad():
        cc.context.gamma.fill_(0.5)  # non-zero, so the attention counts
    state = cc.state_dict()
    assert set(state) == set(head.state_dict())
    head.load_state_dict(state)
    cc.eval()
    head.eval()
    feats = [torch.randn(2, 24, 6, 7)]
    with torch.no_grad():
        torch.testing.assert_close(head(feats)['out'], cc(feats)['out'])


# ---------------------------------------------------------------------------------------------
# Role 2: plug-in on the residual branch of the backbone's blocks.

def attention_blocks(net: DilatedResNet) -> dict[int, list[nn.Module]]:
    return {s: [b for b in getattr(net, f'layer{s}')] for s in (1, 2, 3, 4)}


@pytest.mark.parametrize('name', NAMES)
def test_backbone_plugin_runs_in_chosen_stages_only(name):
    net = DilatedResNet(depth=50, channels=TINY, block_attention=attn_cfg(name), attention_stages=(2, 4))
    cls = ATTENTION.get(name)
    for stage, blocks in attention_blocks(net).items():
        for block in blocks:
            if stage in (2, 4):
                assert type(block.attn) is cls, (stage, block.attn)
                assert getattr(block.attn, 'channels', block.bn3.num_features) == block.bn3.num_features
            else:
                assert block.attn is None, (stage, block.attn)
    expected = {k for k in net.state_dict() if '.attn.' in k}
    assert net.attention_param_names == expected
    assert all(k.startswith(('layer2.', 'layer4.')) for k in expected)
    net.train()
    feats = net(torch.randn(2, 3, 32, 32))
    assert [f.shape[1] for f in feats] == net.out_channels and all(torch.isfinite(f).all() for f in feats)
    feats[-1].square().mean().backward()
    for pname, p in net.named_parameters():
        if '.attn.' in pname:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize('depth, stages', [(18, (1, 3)), (50, (1, 2, 3, 4))])
@pytest.mark.parametrize('name', ['se', 'cbam', 'simam'])
def test_backbone_plugin_sits_before_the_residual_addition(name, depth, stages):
    channels = (16, 16, 32, 32) if depth == 18 else TINY  # SE's reduction 16 needs >= 16 channels
    net = DilatedResNet(depth=depth, channels=channels, block_attention=attn_cfg(name),
                        attention_stages=stages).eval()
    checked = 0
    records = []
    for stage in stages:
        for block in getattr(net, f'layer{stage}'):
            last_norm = block.bn3 if depth == 50 else block.bn2
            with torch.no_grad():  # timm zero-initialises the last norm's scale: make it non-trivial
                last_norm.weight.normal_()
            rec = {}
            # clones: the block adds the shortcut in place onto the attention's output
            last_norm.register_forward_hook(lambda m, i, o, rec=rec: rec.__setitem__('norm', o.clone()))
            block.attn.register_forward_hook(
                lambda m, i, o, rec=rec: rec.update(se_in=i[0].clone(), se_out=o.clone()))
            block.register_forward_hook(lambda m, i, o, rec=rec: rec.update(x=i[0].clone(), y=o.clone()))
            records.append((block, rec))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
        for block, rec in records:
            assert torch.equal(rec['se_in'], rec['norm'])  # right after the last norm
            assert not torch.allclose(rec['se_out'], rec['se_in'])  # the module does something
            shortcut = rec['x'] if block.downsample is None else block.downsample(rec['x'])
            torch.testing.assert_close(rec['y'], torch.relu(rec['se_out'] + shortcut))  # before the add
            checked += 1
    assert checked == sum(len(getattr(net, f'layer{s}')) for s in stages)


@pytest.mark.parametrize('name', CONTEXT)
def test_backbone_context_plugins_at_layer1_keep_the_plain_network(name):
    # At layer1 resolution (stride 4) PAM and non-local attend over all N = H W pixels; the input is
    # tiny (8 x 8 there). Residual with gamma = 0 (or a zero norm), a freshly plugged block leaves
    # the plain network's function unchanged, so pretrained weights keep working; DANet's dual block
    # sums two residual branches, so it doubles its input instead.
    torch.manual_seed(0)
    plain = DilatedResNet(depth=50, channels=TINY).eval()
    with torch.no_grad():  # timm zero-initialises the last norm's scale: make the branches non-trivial
        for block in plain.layer1:
            block.bn3.weight.normal_()
    net = DilatedResNet(depth=50, channels=TINY, block_attention=attn_cfg(name), attention_stages=(1,)).eval()
    missing = net.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith('layer1.') and '.attn.' in k for k in missing)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats, ref = net(x), plain(x)
    assert feats[0].shape[-2:] == (8, 8)  # layer1
    for f, r in zip(feats, ref):
        torch.testing.assert_close(f, r)
    net.train()
    net(x.expand(2, -1, -1, -1))[-1].square().mean().backward()
    grads = [p.grad for n, p in net.named_parameters() if '.attn.' in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_backbone_plugin_bad_stage_or_config():
    with pytest.raises(ValueError, match='attention_stages'):
        DilatedResNet(depth=18, channels=(16, 16, 32, 32), block_attention=dict(type='se'),
                      attention_stages=(0, 5))
    with pytest.raises(ValueError, match="unknown attention type 'nope'"):
        DilatedResNet(depth=18, channels=(16, 16, 32, 32), block_attention=dict(type='nope'))
    with pytest.raises(ValueError, match='divisible by 2 \\* groups'):
        DilatedResNet(depth=50, channels=TINY, block_attention=dict(type='shuffle', groups=64))


def plain_timm_state(path) -> dict[str, torch.Tensor]:
    """A plain (attention-free) timm ResNet-50 layout with tiny widths and a classifier, saved to ``path``."""
    torch.manual_seed(123)
    src = ResNet(Bottleneck, [3, 4, 6, 3], channels=TINY, stem_type='deep', stem_width=TINY[0] // 2,
                 num_classes=10)
    state = src.state_dict()
    torch.save(state, path)
    return state


def timm_key(key: str) -> str:
    """Our backbone key -> timm's (stem.0 = conv1, stem.1 = bn1)."""
    if key.startswith('stem.0'):
        return 'conv1' + key[len('stem.0'):]
    if key.startswith('stem.1'):
        return 'bn1' + key[len('stem.1'):]
    return key


@pytest.mark.parametrize('name', NAMES)
def test_backbone_plugin_loads_plain_weights(name, tmp_path, caplog):
    path = tmp_path / 'plain_r50.pth'
    state = plain_timm_state(path)
    kw = dict(depth=50, channels=TINY, block_attention=attn_cfg(name), attention_stages=(3, 4))
    torch.manual_seed(0)
    fresh = DilatedResNet(**kw)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger=RESNET_LOGGER):
        net = DilatedResNet(**kw, pretrained=str(path))
    own = net.state_dict()
    new = net.attention_param_names
    for key, value in own.items():
        if key in new:
            assert timm_key(key) not in state, key
            assert torch.equal(value, fresh.state_dict()[key]), key  # keeps its initialisation
        else:
            assert torch.equal(value, state[timm_key(key)]), key  # everything else is loaded
    assert set(own) - new == {k for k in own if timm_key(k) in state}  # only attention keys missing
    records = [r for r in caplog.records if r.name == RESNET_LOGGER]
    if new:
        assert len(records) == 1, [r.getMessage() for r in records]  # once, not once per module
        msg = records[0].getMessage()
        # BatchNorm fills in an absent num_batches_tracked itself, so it is not reported missing
        missing = [k for k in new if not k.endswith('num_batches_tracked')]
        assert f'{len(missing)} parameters of the new attention modules' in msg and str(path) in msg
    else:  # parameter- and buffer-free (SimAM): nothing missing, nothing to say
        assert records == []


def test_backbone_plugin_still_rejects_an_incomplete_state(tmp_path):
    path = tmp_path / 'broken.pth'
    state = plain_timm_state(tmp_path / 'plain.pth')
    del state['layer3.1.conv2.weight']
    torch.save(state, path)
    with pytest.raises(ValueError, match="lack 1 backbone parameters.*layer3.1.conv2.weight"):
        DilatedResNet(depth=50, channels=TINY, block_attention=dict(type='se'), pretrained=str(path))


# ---------------------------------------------------------------------------------------------
# Role 3: configs (test_configs.py builds them and runs one train step each).

# The modules that shipped with their two configs; a module added later needs none to pass (its
# configs are then skipped here, and test_configs.py builds any it gets).
WITH_CONFIGS = ('cbam', 'coord', 'eca', 'gam', 'nam', 's2mlpv2', 'se', 'shuffle', 'simam', 'sk', 'soca')
# Modules whose configs are those of the method whose head uses them (configs/<folder>/<prefix>_r50-d8_*):
# name -> (folder, prefix, the head's registered type, the datasets mmsegmentation publishes at 80k).
# The 'nonlocal' configs are the Non-local network (NLHead: AttentionHead with the module 'nonlocal');
# EMANet has no ADE20K config in mmsegmentation. ('dual', PAM + CAM summed in one module, is not what DANet's
# head uses -- it supervises the two branches apart -- so it has no configs of its own.)
BOTH = ('cityscapes', 'ade20k')
DEDICATED_HEAD_CONFIGS = {
    'nonlocal': ('nonlocal', 'nonlocal', 'NLHead', BOTH),
    'criss_cross': ('ccnet', 'ccnet', 'CCHead', BOTH),
    'pam': ('danet', 'danet', 'DAHead', BOTH), 'cam': ('danet', 'danet', 'DAHead', BOTH),
    'dnl': ('dnlnet', 'dnl', 'DNLHead', BOTH), 'gc': ('gcnet', 'gcnet', 'GCHead', BOTH),
    'isa': ('isanet', 'isanet', 'ISAHead', BOTH), 'apnb': ('ann', 'ann', 'ANNHead', BOTH),
    'ema': ('emanet', 'emanet', 'EMAHead', ('cityscapes',)),
}


@pytest.mark.parametrize('name', sorted(set(NAMES) | set(WITH_CONFIGS)))
def test_configs_of_every_module(name):
    assert name in NAMES, f'{name!r} has configs but is not registered'
    if name in DEDICATED_HEAD_CONFIGS:
        folder, prefix, head_type, datasets = DEDICATED_HEAD_CONFIGS[name]
        cases = {'cityscapes': (f'configs/{folder}/{prefix}_r50-d8_4xb2-80k_cityscapes-512x1024.py', 19),
                 'ade20k': (f'configs/{folder}/{prefix}_r50-d8_4xb4-80k_ade20k-512x512.py', 150)}
        for dataset in datasets:
            rel, num_classes = cases[dataset]
            assert os.path.isfile(os.path.join(ROOT, rel)), f'{name!r}: missing {rel}'
            cfg = load_config(os.path.join(ROOT, rel))
            assert cfg.model.decode_head.type == head_type, rel
            assert cfg.model.decode_head.num_classes == cfg.model.num_classes == num_classes, rel
        head = MODELS.build(cfg.model.decode_head.to_dict())
        assert any(isinstance(m, ATTENTION.get(name)) for m in head.modules()), f'{head_type} lacks {name!r}'
        return
    cases = [(f'configs/attention/{name}_r50-d8_4xb2-80k_cityscapes-512x1024.py', 19),
             (f'configs/attention/{name}_r50-d8_4xb4-80k_ade20k-512x512.py', 150)]
    present = [os.path.isfile(os.path.join(ROOT, rel)) for rel, _ in cases]
    if name not in WITH_CONFIGS and not any(present):
        pytest.skip(f'no configs for {name!r} (optional: copy configs/attention/se_r50-d8_*.py)')
    assert all(present), f'{name!r}: missing {[rel for (rel, _), ok in zip(cases, present) if not ok]}'
    for rel, num_classes in cases:
        cfg = load_config(os.path.join(ROOT, rel))
        head = cfg.model.decode_head
        assert head.type == 'AttentionHead' and head.attention.type == name, rel
        assert head.channels == 512 and head.in_channels == 2048 and head.in_index == 3
        assert 'recurrence' not in head  # the CCHead option is dropped by the base
        assert (cfg.model.num_classes == head.num_classes == cfg.model.auxiliary_head.num_classes
                == num_classes), rel
        build_attention(head.attention.to_dict(), head.channels)  # valid at the configured width


def test_attn_base_config():
    cfg = load_config(os.path.join(ROOT, 'configs/_base_/models/attn_r50-d8.py'))
    assert cfg.model.decode_head.to_dict() == dict(
        type='AttentionHead', in_channels=2048, channels=512, num_classes=19, attention=dict(type='se'),
        in_index=3, dropout=0.1, norm='SyncBN')
    assert cfg.model.backbone.depth == 50 and cfg.model.auxiliary_head.type == 'FCNHead'


# ---------------------------------------------------------------------------------------------
# The benchmark tool.

def test_benchmark_counts_against_formulas():
    tool = attention_bench
    c, h, w = 32, 4, 6
    rows = {r['name']: r for r in tool.benchmark(['se', 'eca', 'simam', 'shuffle'], channels=c, height=h,
                                                 width=w, warmup=0, repeats=2,
                                                 options={'shuffle': {'groups': 4}})}
    se, eca, simam, shuffle = rows['se'], rows['eca'], rows['simam'], rows['shuffle']
    assert se['params'] == 2 * c * (c // 16) and se['flops'] == 2 * 2 * c * (c // 16)  # two linears
    k = eca_kernel_size(c)
    assert eca['params'] == k and eca['flops'] == 2 * k * c  # one 1-D conv across the C channels
    assert simam['params'] == 0 and simam['flops'] == 0  # elementwise only: not counted
    assert shuffle['options'] == dict(groups=4) and shuffle['params'] == 3 * c // 4
    for r in rows.values():
        assert len(r['times_ms']) == 2 and r['ms'] > 0 and r['ms_min'] <= r['ms']
    widths, blocks = (256, 512, 1024, 2048), (3, 4, 6, 3)
    assert se['r50_plugin_params'] == sum(n * 2 * wd * (wd // 16) for wd, n in zip(widths, blocks))
    assert simam['r50_plugin_params'] == 0
    assert tool.resnet_plugin_params('shuffle', dict(groups=256)) is None  # 256 % 512 != 0
    assert tool.resnet_plugin_params('se', depth=18) == sum(
        2 * 2 * wd * (wd // 16) for wd in (64, 128, 256, 512))


def test_benchmark_counts_context_blocks():
    tool = attention_bench
    c, h, w, r = 32, 4, 6, 8
    n, cq = h * w, c // r
    rows = {row['name']: row for row in tool.benchmark(list(CONTEXT), channels=c, height=h, width=w, warmup=0,
                                                       repeats=1)}
    qkv_params = 2 * (c * cq + cq) + c * c + c + 1
    qkv_flops = 2 * n * (2 * c * cq + c * c)  # the three 1x1 convs
    assert rows['cam']['params'] == 1 and rows['cam']['flops'] == 2 * 2 * c * c * n  # E = X X^T, then A X
    assert rows['pam']['params'] == qkv_params
    assert rows['pam']['flops'] == qkv_flops + 2 * n * n * (cq + c)  # logits, then weighted sum
    # two passes, each over the H + W pixels of every pixel's row and column (itself counted twice)
    assert rows['criss_cross']['params'] == qkv_params
    assert rows['criss_cross']['flops'] == 2 * (qkv_flops + 2 * n * (h + w) * (cq + c))
    assert rows['dual']['params'] == qkv_params + 1
    assert rows['dual']['flops'] == rows['pam']['flops'] + rows['cam']['flops']
    # non-local: its four 1x1 convs plus the attention (logits, then weighted sum). On CPU the attention
    # runs in SDPA's fused flash kernel, which FlopCounterMode alone does not count; count_flops adds
    # it (seg.analysis.measure.FUSED_ATTENTION_KERNELS), so it must be in the total.
    ci = c // 2
    assert rows['nonlocal']['flops'] == 2 * n * 4 * c * ci + 2 * n * n * 2 * ci
    assert rows['cam']['r50_plugin_params'] == 16  # one gamma per block
    assert rows['dual']['r50_plugin_params'] == rows['pam']['r50_plugin_params'] + 16


def test_benchmark_batch_scales_flops():
    tool = attention_bench
    one, four = (tool.benchmark(['cbam'], channels=32, height=5, width=5, batch=b, warmup=0, repeats=1)[0]
                 for b in (1, 4))
    assert four['flops'] == 4 * one['flops'] > 0


def test_benchmark_cli_table_and_json(tmp_path):
    out = tmp_path / 'sub' / 'bench.json'
    proc = subprocess.run([sys.executable, 'tools/benchmark_attention.py', '--channels', '32', '--height', '6',
                           '--width', '8', '--warmup', '0', '--repeats', '1', '--option', 'shuffle.groups=4',
                           '--json', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert '| module | options | params | FLOPs | median ms |' in text
    for name in NAMES:
        assert f'\n| {name} |' in text
    data = json.loads(out.read_text())
    assert [r['name'] for r in data['results']] == NAMES
    assert data['setting'] == dict(channels=32, height=6, width=8, batch=1, warmup=0, repeats=1)
    assert data['environment']['torch'] == torch.__version__ and data['environment']['cpu']


def test_benchmark_bad_arguments():
    tool = attention_bench
    # the one number formatter of seg.analysis.measure
    assert [si(v) for v in (0, 5, 5120, 1.7375e6, 1.0737e11)] == ['0', '5', '5.12 K', '1.74 M', '107.37 G']
    assert tool.parse_options(['sk.kernels=(3, 5, 7)', 'nam.spatial=True', 'x.y=abc']) == {
        'sk': {'kernels': (3, 5, 7)}, 'nam': {'spatial': True}, 'x': {'y': 'abc'}}
    with pytest.raises(ValueError, match='NAME.KEY=VALUE'):
        tool.parse_options(['groups=4'])
    with pytest.raises(ValueError, match='not benchmarked'):
        tool.benchmark(['se'], channels=32, options={'shuffle': {'groups': 4}})
    with pytest.raises(ValueError, match='repeat >= 1'):
        time_call(lambda: None, repeat=0)
    with pytest.raises(ValueError, match='divisible by 2 \\* groups'):  # shuffle's 64 groups do not fit 32 channels
        tool.benchmark(['shuffle'], channels=32, repeats=1, options={'shuffle': {'groups': 64}})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_benchmark_on_cuda():
    tool = attention_bench
    row = tool.benchmark(['se'], channels=64, height=8, width=8, warmup=1, repeats=2, device='cuda')[0]
    assert row['ms'] > 0 and row['flops'] == 2 * 2 * 64 * 4
