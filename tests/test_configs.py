"""Every config file builds and runs one train step and one predict step on a tiny input."""
import glob
import os

import pytest
import torch
from mmengine.optim import OptimWrapper

from seg.engine.config import import_all, load_config
from seg.registry import MODELS

from .conftest import ROOT

CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def test_there_are_configs():
    assert 'configs/ccnet_r50.py' in CONFIGS and 'configs/demo_ccnet.py' in CONFIGS
    for method in ('ccnet', 'danet', 'nonlocal', 'fcn', 'attention'):  # grouped by method, each with a README
        assert any(c.startswith(f'configs/{method}/') for c in CONFIGS), method
        assert os.path.isfile(os.path.join(ROOT, 'configs', method, 'README.md')), method


def test_r101_and_769_configs_inherit_their_siblings():
    for config in CONFIGS:
        text = open(os.path.join(ROOT, config)).read()
        name = os.path.basename(config)
        if '_r101-' in name:
            assert f"_base_ = './{name.replace('_r101-', '_r50-')}'" in text, config
            assert len(text.splitlines()) <= 4, config
        elif name.endswith('769x769.py'):
            assert f"'./{name.replace('769x769', '512x1024')}'" in text, config


@pytest.mark.parametrize('config', CONFIGS)
def test_config_trains_and_predicts_one_step(config):
    import_all()
    from seg.datasets.transforms import build_pipeline

    cfg = load_config(os.path.join(ROOT, config))
    for loader in ('train_dataloader', 'val_dataloader'):
        build_pipeline(list(cfg[loader].dataset.pipeline))
    cfg.model.backbone.pretrained = None
    if cfg.model.test_cfg.get('mode') == 'slide':  # slide windows that fit the tiny input
        cfg.model.test_cfg.update(crop_size=(24, 24), stride=(16, 16))
    model = MODELS.build(cfg.model)
    num_classes = cfg.model.num_classes
    size = (32, 32)
    inputs = [torch.randint(0, 256, (3, *size), dtype=torch.uint8) for _ in range(2)]
    samples = [dict(gt_sem_seg=torch.randint(0, num_classes, size)) for _ in range(2)]
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    model.train()
    log_vars = model.train_step(dict(inputs=inputs, data_samples=samples), optim)
    assert torch.isfinite(log_vars['loss']) and 'loss_out' in log_vars
    model.eval()
    preds = model.val_step(dict(inputs=inputs[:1], data_samples=samples[:1]))
    assert preds[0]['pred_sem_seg'].shape == size
    assert int(preds[0]['pred_sem_seg'].max()) < num_classes
