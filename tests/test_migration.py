"""Checkpoints written before the redesign still load: the old criss-cross keys (``...cca.query``) are
renamed once, on load, and the old text config is read as literals."""
import torch
from mmengine.config import Config

from seg.engine.checkpoint import config_from_checkpoint, load_checkpoint
from seg.engine.migration import migrate_state_dict

from .conftest import ROOT


def test_old_criss_cross_keys_are_renamed():
    old = {'decode_head.context.cca.query.weight': torch.ones(1), 'decode_head.context.cca.gamma': torch.ones(1),
           'backbone.layer4.0.se.cca.value.bias': torch.ones(1), 'decode_head.conv_in.0.weight': torch.ones(1)}
    assert list(migrate_state_dict(old)) == ['decode_head.context.query.weight', 'decode_head.context.gamma',
                                             'backbone.layer4.0.se.value.bias', 'decode_head.conv_in.0.weight']


def test_an_old_ccnet_checkpoint_evaluates(tmp_path):
    from seg.apis import evaluate
    from seg.apis.config import load_config
    from seg.apis.model_io import build_model

    cfg = load_config(f'{ROOT}/configs/demo_ccnet.py', {
        'val_dataloader.dataset.data_root': str(tmp_path / 'synthetic'), 'val_dataloader.dataset.num_images': 2,
        'val_dataloader.dataset.img_size': (32, 64), 'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False})
    cfg.test_dataloader = cfg.val_dataloader
    model = build_model(cfg)
    # The layout of 0.1.0: the recurrent module wrapped its pass in 'cca', the config was Python text.
    state = {k.replace('.context.', '.context.cca.'): v
             for k, v in model.state_dict().items()}
    assert any('.cca.' in k for k in state)
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': state, 'meta': {'cfg': Config(cfg.to_dict()).pretty_text}}, path)
    ckpt = load_checkpoint(path)
    assert not any('.cca.' in k for k in ckpt['state_dict']) and set(ckpt['state_dict']) == set(model.state_dict())
    assert config_from_checkpoint(ckpt).model.decode_head.type == 'CCHead'
    metrics = evaluate(str(path), num_workers=0)
    assert 0 <= metrics['mIoU'] <= 100
