"""Every config file loads, builds its pipelines and its model; every distinct model among them runs one
train step and one predict step on a tiny input.

Configs that differ only in the schedule (40k / 80k / 160k) or the backbone depth (R-50 / R-101) build
the same network: one of each such group runs the steps (the others are built on the meta device).
"""
import copy
import functools
import glob
import json
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
    for method in ('ccnet', 'danet', 'nonlocal', 'fcn', 'attention', 'emanet', 'isanet', 'pspnet', 'deeplabv3',
                   'apcnet', 'dmnet', 'ocrnet', 'gcnet', 'psanet', 'dnlnet', 'ann'):  # by method, each with a README
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


@functools.cache
def _model_key(config: str) -> str:
    model = copy.deepcopy(load_config(os.path.join(ROOT, config)).model.to_dict())
    model['backbone'].pop('depth', None)
    model['backbone'].pop('pretrained', None)
    return json.dumps(model, sort_keys=True, default=str)


def _stepped() -> list[str]:
    first: dict[str, str] = {}
    for config in CONFIGS:
        first.setdefault(_model_key(config), config)
    return sorted(first.values())


@pytest.mark.parametrize('config', CONFIGS)
def test_config_loads_and_builds(config):
    import_all()
    from seg.datasets.transforms import build_pipeline

    cfg = load_config(os.path.join(ROOT, config))
    for loader in ('train_dataloader', 'val_dataloader'):
        build_pipeline(list(cfg[loader].dataset.pipeline))
    cfg.model.backbone.pretrained = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_stepped_configs_cover_every_distinct_model():
    stepped = _stepped()
    assert {_model_key(c) for c in stepped} == {_model_key(c) for c in CONFIGS}
    assert 'configs/demo_ccnet.py' in stepped and len(stepped) < len(CONFIGS)


@pytest.mark.parametrize('config', _stepped())
def test_config_trains_and_predicts_one_step(config):
    import_all()

    cfg = load_config(os.path.join(ROOT, config))
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
