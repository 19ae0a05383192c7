"""One SyncBN mechanism: the norm a config declares is the layer that is built ('SyncBN' is
``torch.nn.SyncBatchNorm``, 'BN' BatchNorm2d), nothing converts it afterwards except the runner under
DDP on CPU processes (gloo has no SyncBatchNorm kernel), which makes SyncBatchNorm BatchNorm with the
same weights and statistics."""
import copy
import logging

import pytest
import torch
from mmengine.config import Config
from torch import nn

from seg.engine.config import import_all, load_config, resolve_runtime
from seg.engine.runner import SegRunner
from seg.models.fuse import fold_batchnorm
from seg.models.norm import build_norm, match_norm, to_batchnorm, to_sync_batchnorm
from seg.registry import MODELS

from .conftest import ROOT, randomize

import_all()

_BN = nn.modules.batchnorm._BatchNorm


def model_cfg(backbone_norm: str = 'SyncBN', head_norm: str = 'BN', aux_norm: str = 'SyncBN') -> dict:
    """A small EncoderDecoder with attention modules that build BatchNorms of their own: SK (BatchNorm2d
    branches, a BatchNorm1d squeeze) plugged into the backbone, GAM as the decode head's context."""
    return dict(
        type='EncoderDecoder', num_classes=5, data_preprocessor=dict(type='SegDataPreprocessor'),
        backbone=dict(type='DilatedResNet', depth=18, channels=(16, 16, 32, 32), norm=backbone_norm,
                      pretrained=None, block_attention=dict(type='sk'), attention_stages=(4,)),
        decode_head=dict(type='AttentionHead', in_channels=32, channels=16, num_classes=5,
                         attention=dict(type='gam'), in_index=3, dropout=0.0, norm=head_norm),
        auxiliary_head=dict(type='FCNHead', in_channels=32, channels=16, num_classes=5, num_convs=1,
                            concat_input=False, in_index=2, dropout=0.0, norm=aux_norm),
        loss_weights=dict(out=1.0, aux=0.4), test_cfg=dict(mode='whole'))


def norms(module: nn.Module) -> dict[str, type]:
    return {n: type(m) for n, m in module.named_modules() if isinstance(m, _BN)}


def test_the_declared_norm_is_the_layer_built():
    assert type(build_norm('BN', 8)) is nn.BatchNorm2d
    assert type(build_norm('SyncBN', 8)) is nn.SyncBatchNorm
    model = MODELS.build(model_cfg(backbone_norm='SyncBN', head_norm='BN', aux_norm='SyncBN'))
    backbone, head, aux = norms(model.backbone), norms(model.decode_head), norms(model.auxiliary_head)
    # every norm of the backbone (stem, blocks, downsamples and the SK plug-ins' own BNs) is synchronised
    assert backbone and set(backbone.values()) == {nn.SyncBatchNorm}
    assert any(n.startswith('layer4.') and '.attn.' in n for n in backbone)
    assert 'stem.1' in backbone and 'layer2.0.downsample.1' in backbone
    # the head declared 'BN', and the BNs of its attention module, stay BatchNorm2d
    assert head and set(head.values()) == {nn.BatchNorm2d}
    assert any(n.startswith('context.') for n in head)
    assert aux and set(aux.values()) == {nn.SyncBatchNorm}
    plain = MODELS.build(model_cfg('BN', 'BN', 'BN'))
    assert set(norms(plain).values()) == {nn.BatchNorm1d, nn.BatchNorm2d}
    assert list(norms(plain)) == list(norms(model))  # the same layers, the same state-dict keys
    assert list(plain.state_dict()) == list(model.state_dict())


def test_resolve_runtime_converts_nothing(monkeypatch):
    runtime = load_config(f'{ROOT}/configs/demo_ccnet.py')
    assert 'sync_bn' not in runtime  # the runtime base has no second switch
    cfg = Config(dict(train_dataloader=dict(batch_size=2), model=model_cfg()))
    before = cfg.to_dict()
    assert resolve_runtime(cfg.copy(), world_size=1).to_dict() == before
    assert resolve_runtime(cfg.copy(), world_size=2).to_dict() == before
    # A stale mmengine switch (which would convert the 'BN' layers too) is switched off, with a warning.
    stale = Config(dict(train_dataloader=dict(batch_size=2), sync_bn='torch'))
    logged = []
    monkeypatch.setattr('mmengine.logging.print_log', lambda msg, **kw: logged.append((msg, kw.get('level'))))
    assert resolve_runtime(stale).sync_bn is None
    assert len(logged) == 1 and "sync_bn='torch' is ignored" in logged[0][0] and logged[0][1] == logging.WARNING


def test_single_process_syncbn_equals_bn():
    sync = randomize(MODELS.build(model_cfg('SyncBN', 'SyncBN', 'SyncBN')))
    plain = MODELS.build(model_cfg('BN', 'BN', 'BN'))
    plain.load_state_dict(sync.state_dict())
    assert torch.distributed.is_available() and not torch.distributed.is_initialized()
    x = torch.randn(2, 3, 32, 48)
    sync.train(), plain.train()
    with torch.no_grad():
        torch.testing.assert_close(sync.forward_logits(x), plain.forward_logits(x), rtol=0, atol=0)
    for (k, a), b in zip(sync.state_dict().items(), plain.state_dict().values()):  # the same statistics
        assert torch.equal(a, b), k
    sync.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(sync(x), plain(x))
        # folding treats SyncBatchNorm as BatchNorm2d: the same layers fold, to the same function
        sync_f, plain_f = copy.deepcopy(sync), copy.deepcopy(plain)
        assert fold_batchnorm(sync_f) == fold_batchnorm(plain_f) > 0
        assert [n for n, m in sync_f.named_modules() if isinstance(m, _BN)] == \
            [n for n, m in plain_f.named_modules() if isinstance(m, _BN)]
        assert torch.equal(sync_f(x), plain_f(x))


def test_cpu_ddp_conversion_keeps_weights_and_statistics():
    model = randomize(MODELS.build(model_cfg(backbone_norm='SyncBN', head_norm='BN', aux_norm='SyncBN'))).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_bns = {n: m for n, m in model.decode_head.named_modules() if isinstance(m, _BN)}
    weight = model.backbone.stem[1].weight
    converted = to_batchnorm(model)
    assert converted is model
    after = norms(model)
    assert nn.SyncBatchNorm not in after.values()
    assert after == norms(MODELS.build(model_cfg('BN', 'BN', 'BN')))  # SK's squeeze is a BatchNorm1d again
    assert {n: m for n, m in model.decode_head.named_modules() if isinstance(m, _BN)} == head_bns  # untouched
    state = model.state_dict()
    assert list(state) == list(before) and all(torch.equal(state[k], v) for k, v in before.items())
    assert model.backbone.stem[1].weight is weight  # the same parameters (an optimizer built later sees them)
    assert all(m.training for m in model.modules())
    model.eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        reference = MODELS.build(model_cfg('BN', 'BN', 'BN')).eval()
        reference.load_state_dict(before)
        assert torch.equal(model(x), reference(x))


def test_sync_and_plain_conversions_invert_each_other():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(6), nn.BatchNorm1d(6))
    net(torch.randn(2, 3, 5, 5))
    randomize(net).eval()
    sync = to_sync_batchnorm(copy.deepcopy(net))
    assert [type(m) for m in sync] == [nn.Conv2d, nn.SyncBatchNorm, nn.Flatten, nn.Linear, nn.SyncBatchNorm]
    assert not sync.training and not sync[1].training
    back = to_batchnorm(sync)
    assert [type(m) for m in back] == [nn.Conv2d, nn.BatchNorm2d, nn.Flatten, nn.Linear, nn.BatchNorm1d]
    x = torch.randn(3, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    assert type(to_batchnorm(nn.SyncBatchNorm(3))) is nn.BatchNorm2d
    assert type(to_sync_batchnorm(nn.BatchNorm2d(3))) is nn.SyncBatchNorm
    gn = nn.GroupNorm(1, 3)
    assert match_norm(gn, 'SyncBN') is gn and type(match_norm(nn.BatchNorm2d(3), 'BN')) is nn.BatchNorm2d


def _runner(distributed: bool) -> SegRunner:
    runner = object.__new__(SegRunner)  # only what build_model reads
    runner._distributed = distributed
    runner.cfg = Config(dict(channels_last=False))
    runner.logger = logging.getLogger('test_syncbn')
    return runner


@pytest.mark.parametrize('distributed, cuda, expected', [
    (True, False, {nn.BatchNorm2d, nn.BatchNorm1d}),  # DDP on CPU processes: gloo has no SyncBatchNorm
    (True, True, {nn.SyncBatchNorm, nn.BatchNorm2d}),  # DDP on GPUs: as declared
    (False, False, {nn.SyncBatchNorm, nn.BatchNorm2d}),  # one process: as declared (it computes BN)
])
def test_runner_converts_only_under_cpu_ddp(monkeypatch, distributed, cuda, expected):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    model = SegRunner.build_model(_runner(distributed), MODELS.build(model_cfg(head_norm='BN')))
    assert set(norms(model).values()) == expected
    assert set(norms(model.decode_head).values()) == {nn.BatchNorm2d}
