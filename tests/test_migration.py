"""Checkpoints written before the redesign still load: the old criss-cross keys (``...cca.query``) are
renamed once, on load, and the old text config is read as literals."""
import torch
from mmengine.config import Config

from seg.engine.checkpoint import config_from_checkpoint, load_checkpoint
from seg.engine.migration import migrate_state_dict

from .conftest import ROOT, randomize


def test_old_criss_cross_keys_are_renamed():
    old = {'decode_head.context.cca.query.weight': torch.ones(1), 'decode_head.context.cca.gamma': torch.ones(1),
           'backbone.layer4.0.se.cca.value.bias': torch.ones(1), 'decode_head.conv_in.0.weight': torch.ones(1)}
    assert list(migrate_state_dict(old)) == ['decode_head.context.query.weight', 'decode_head.context.gamma',
                                             'backbone.layer4.0.attn.value.bias', 'decode_head.conv_in.0.weight']


def test_an_old_ccnet_checkpoint_evaluates(tmp_path):
    from seg.apis import evaluate
    from seg.apis.model_io import build_model
    from seg.datasets.collate import seg_collate
    from seg.engine.config import load_config
    from seg.evaluation.metrics import confusion_matrix, metrics_from_confusion
    from seg.registry import DATASETS

    cfg = load_config(f'{ROOT}/configs/demo_ccnet.py', {
        'val_dataloader.dataset.data_root': str(tmp_path / 'synthetic'), 'val_dataloader.dataset.num_images': 2,
        'val_dataloader.dataset.img_size': (32, 64), 'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False})
    cfg.test_dataloader = cfg.val_dataloader
    model = randomize(build_model(cfg)).eval()  # weights that all matter: a key lost on load changes labels
    # The layout of 0.1.0: the recurrent module wrapped its pass in 'cca', the config was Python text.
    state = {k.replace('.context.', '.context.cca.'): v
             for k, v in model.state_dict().items()}
    assert any('.cca.' in k for k in state)
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': state, 'meta': {'cfg': Config(cfg.to_dict()).pretty_text}}, path)
    ckpt = load_checkpoint(path)
    assert not any('.cca.' in k for k in ckpt['state_dict']) and set(ckpt['state_dict']) == set(model.state_dict())
    assert config_from_checkpoint(ckpt).model.decode_head.type == 'CCHead'
    metrics = evaluate(str(path), num_workers=0, precision='fp32', fold_bn=False)
    # The mIoU of the model the old checkpoint was written from, counted by hand on the same images.
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    total = torch.zeros(model.num_classes, model.num_classes, dtype=torch.int64)
    for i in range(len(dataset)):
        data = model.data_preprocessor(seg_collate([dataset[i]]), False)
        with torch.no_grad():
            result = model.predict(data['inputs'], data['data_samples'])[0]
        total += confusion_matrix(result['pred_sem_seg'], result['gt_sem_seg'].long(), model.num_classes,
                                  model.ignore_index)
    assert total.sum() == 2 * 32 * 64
    assert metrics['mIoU'] == round(100 * metrics_from_confusion(total)['mIoU'], 2)


def test_old_backbone_plugin_keys_load_with_identical_outputs(tmp_path):
    """Before issue 17 the backbone's attention plug-in was stored in timm's ``se`` slot whatever the module
    (``backbone.layer4.0.se.query.weight``); such a checkpoint loads into the ``attn`` slot unchanged."""
    from seg.registry import MODELS

    cfg = dict(type='EncoderDecoder', num_classes=5, data_preprocessor=dict(type='SegDataPreprocessor'),
               backbone=dict(type='DilatedResNet', depth=18, channels=(16, 16, 32, 32), pretrained=None,
                             block_attention=dict(type='criss_cross'), attention_stages=(3, 4)),
               decode_head=dict(type='FCNHead', in_channels=32, channels=16, num_classes=5, num_convs=1,
                                concat_input=False, in_index=3, dropout=0.0),
               test_cfg=dict(mode='whole'))
    model = randomize(MODELS.build(cfg)).eval()
    state = model.state_dict()
    plugin = [k for k in state if '.attn.' in k]
    assert plugin and all(k.startswith(('backbone.layer3.', 'backbone.layer4.')) for k in plugin)
    old = {k.replace('.attn.', '.se.'): v for k, v in state.items()}
    assert 'backbone.layer4.0.se.query.weight' in old
    # Only seg's plug-in keys move: a decode-head 'se' module and timm-style keys without 'backbone.' stay.
    assert migrate_state_dict({'decode_head.context.se.fc1.weight': 0, 'layer1.0.se.fc1.weight': 0}) == {
        'decode_head.context.se.fc1.weight': 0, 'layer1.0.se.fc1.weight': 0}
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': old, 'meta': {}}, path)
    loaded = load_checkpoint(path)['state_dict']
    assert list(loaded) == list(state)
    fresh = MODELS.build(cfg).eval()
    fresh.load_state_dict(loaded, strict=True)
    x = torch.randn(2, 3, 32, 48)
    without_plugin = MODELS.build(cfg).eval()
    without_plugin.load_state_dict({k: v for k, v in state.items() if k not in plugin}, strict=False)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
        assert not torch.allclose(without_plugin(x), model(x))  # the plug-in's weights count

