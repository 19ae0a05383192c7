"""seg.create_model: every name builds in train mode; pretrained=True starts from the recipe's ImageNet
weights (never silently from scratch); weights= loads a trained seg or mmsegmentation checkpoint; the
presets are the configs' models; heads declare the outputs they supervise."""
import os

import pytest
import torch

import seg
from seg.engine.config import load_config
from seg.models.factory import BACKBONES, backbone_skeleton, model_config

from .conftest import ROOT, randomize


@pytest.mark.parametrize('name', seg.list_models())
def test_every_name_builds_on_the_demo_network_in_train_mode(name):
    model = seg.create_model(name, backbone='demo', num_classes=5)
    assert model.training and model.num_classes == 5
    assert model.backbone.layer1[0].conv1.weight.requires_grad
    outs = model.forward_logits(torch.zeros(2, 3, 32, 32))
    aux = {'aux'} if model.auxiliary_head is not None else set()  # OCRNet's FCN stage replaces it
    assert set(outs) == {*aux, *model.decode_head.outputs}  # the head declares what it supervises
    assert set(model.loss_weights) == set(outs)


def test_a_module_as_plugin_goes_into_the_named_stages_only():
    model = seg.create_model('cbam', backbone='r18', num_classes=3, plugin_stages=(2, 3))
    stages = {name.split('.')[1] for name, _ in model.named_parameters() if 'channel_gate' in name}
    assert stages == {'layer2', 'layer3'}
    assert type(model.decode_head).__name__ == 'FCNHead'
    with pytest.raises(ValueError, match="'ccnet' is a head, not an attention module"):
        seg.create_model('ccnet', backbone='demo', plugin_stages=(4,))


def test_pretrained_true_reads_the_recipes_imagenet_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    reference = randomize(seg.create_model('fcn', backbone='r18')).backbone
    state = {k: v for k, v in reference.state_dict().items()}
    os.makedirs(tmp_path / 'hub' / 'checkpoints')
    torch.save(state, tmp_path / 'hub' / 'checkpoints' / 'resnet18_v1c-b5776b93.pth')
    model = seg.create_model('ccnet', backbone='r18', num_classes=7, pretrained=True)
    assert torch.equal(model.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    scratch = seg.create_model('ccnet', backbone='r18', num_classes=7)
    assert not torch.equal(scratch.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    with pytest.raises(ValueError, match="backbone 'demo' has no ImageNet weights"):
        seg.create_model('fcn', backbone='demo', pretrained=True)
    with pytest.raises((RuntimeError, FileNotFoundError), match='resnet50_v1c'):  # offline, not cached: it says so
        seg.create_model('fcn', backbone='r50', pretrained=True)


@pytest.mark.slow
def test_weights_load_a_published_mmseg_checkpoint_converted_on_the_fly(tmp_path):
    """mmsegmentation's CCNet R-50-D8 key layout (the published checkpoint's keys and shapes), random weights."""
    import json

    from .mmseg_layout import random_weights

    with open(os.path.join(ROOT, 'tests', 'data', 'mmseg', 'ccnet_r50_layout.json')) as f:
        layout = json.load(f)
    weights = {k: torch.from_numpy(v) for k, v in random_weights(layout, 3).items()}
    torch.save({'state_dict': weights, 'meta': {'config': "raise SystemExit('never run')"}}, tmp_path / 'mmseg.pth')
    model = seg.create_model('ccnet', backbone='r50', num_classes=19, weights=tmp_path / 'mmseg.pth')
    assert torch.equal(model.state_dict()['decode_head.cls.1.weight'], weights['decode_head.conv_seg.weight'])
    assert torch.equal(model.backbone.layer4[2].conv3.weight, weights['backbone.layer4.2.conv3.weight'])


def test_weights_load_a_trained_checkpoint(tmp_path):
    trained = randomize(seg.create_model('danet', backbone='demo', num_classes=4))
    torch.save({'state_dict': trained.state_dict(), 'meta': {}}, tmp_path / 'danet.pth')
    model = seg.create_model('danet', backbone='demo', num_classes=4, weights=tmp_path / 'danet.pth')
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    with pytest.raises(ValueError, match=r'predicts 4 classes'):
        seg.create_model('danet', backbone='demo', num_classes=6, weights=tmp_path / 'danet.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        seg.create_model('danet', backbone='demo', weights=tmp_path / 'nope.pth')


@pytest.mark.parametrize('backbone, config', [('r50', '_base_/models/fcn_r50-d8.py'),
                                              ('r101', 'fcn/fcn_r101-d8_4xb2-80k_cityscapes-512x1024.py')])
def test_presets_are_the_configs_models(backbone, config):
    model = load_config(os.path.join(ROOT, 'configs', config)).model.to_dict()
    preset = backbone_skeleton(backbone)
    for key in ('backbone', 'decode_head', 'auxiliary_head', 'data_preprocessor', 'loss_weights'):
        assert {k: v for k, v in preset[key].items() if k != 'num_classes'} == \
            {k: v for k, v in model[key].items() if k not in ('num_classes', 'ignore_index', 'seg_pad_val')}, key


def test_the_demo_preset_is_the_demo_network():
    demo = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py')).model.to_dict()
    preset = BACKBONES['demo']
    assert preset['backbone'] == demo['backbone'] and preset['auxiliary_head'] == demo['auxiliary_head']
    head = model_config('ccnet', 'demo')['decode_head']
    assert {k: head[k] for k in ('in_channels', 'channels', 'in_index', 'norm')} == \
        {k: demo['decode_head'][k] for k in ('in_channels', 'channels', 'in_index', 'norm')}


NEW_HEADS = {'psp': 'PSPHead', 'aspp': 'ASPPHead', 'ocr': 'OCRHead', 'ema': 'EMAHead', 'gc': 'GCHead',
             'isa': 'ISAHead', 'dnl': 'DNLHead', 'ann': 'ANNHead', 'psa': 'PSAHead', 'apc': 'APCHead', 'dm': 'DMHead'}


@pytest.mark.parametrize('name', sorted(NEW_HEADS))
def test_every_mmseg_head_by_name_on_the_demo_backbone_trains_a_step(name):
    """Each head by its short name (the compare tool's): the demo network with it trains one step and
    predicts, its extra outputs supervised (OCRNet's soft regions at mmseg's 0.4, replacing the
    auxiliary head), on inputs that no pooling grid or group divides."""
    from mmengine.optim import OptimWrapper

    from seg.models.factory import model_config, resolve_name
    from seg.registry import MODELS

    assert resolve_name(name) == ('head', NEW_HEADS[name])
    cfg = model_config(name, 'demo')
    if name == 'ocr':
        assert cfg['auxiliary_head'] is None and cfg['loss_weights'] == {'out': 1.0, 'soft': 0.4}
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    size = (40, 56)
    inputs = [torch.randint(0, 256, (3, *size), dtype=torch.uint8) for _ in range(2)]
    samples = [dict(gt_sem_seg=torch.randint(0, 9, size)) for _ in range(2)]
    model.train()
    log_vars = model.train_step(dict(inputs=inputs, data_samples=samples),
                                OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3)))
    assert torch.isfinite(log_vars['loss'])
    assert {f'loss_{k}' for k in cfg['loss_weights']} <= set(log_vars)
    model.eval()
    preds = model.val_step(dict(inputs=inputs[:1], data_samples=samples[:1]))
    assert preds[0]['pred_sem_seg'].shape == size


@pytest.mark.parametrize('name', ['ema', 'isa', 'gc', 'dnl'])
def test_a_module_named_like_a_head_still_plugs_in(name):
    model = seg.create_model(name, backbone='demo', plugin_stages=(4,))
    assert any(type(m).__module__ == f'seg.models.attention.{name}' for m in model.backbone.modules())
