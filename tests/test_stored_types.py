"""A stored config names registered types only: a checkpoint whose config names a module or a function
anywhere a builder reaches imports nothing and calls nothing, in eval, infer, the visualiser, the
benchmark and a comparison's evaluation of its runs; shipped configs pass the check unchanged."""
import copy
import glob
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from seg.apis.model_io import build_model
from seg.engine.config import load_config
from seg.engine.config_data import check_stored_config, config_from_data, config_to_data

from .conftest import ROOT

PACKAGE = '''
import pathlib
pathlib.Path({marker!r}, 'imported').touch()


def touch(*args, **kwargs):
    pathlib.Path({marker!r}, 'called').touch()
    return touch
'''

# Where a stored config reaches a builder, and a value there that would import ``evilmod`` or call
# ``evilmod.touch``.
POISON = {
    'model.type': 'evilmod.touch',
    'model.decode_head.type': 'evilmod.touch',
    'model.auxiliary_head.type': 'evilmod.touch',
    'model.backbone.type': 'evilmod.touch',
    'model.data_preprocessor.type': 'evilmod.touch',
    'model.decode_head.attention': {'type': 'evilmod.touch'},
    'model.backbone.block_attention': {'type': 'evilmod.touch'},
    'model.loss': [{'type': 'evilmod.touch'}],
    'test_dataloader.dataset.type': 'evilmod.touch',
    'test_dataloader.dataset.pipeline': [{'type': 'evilmod.touch'}],
    'test_dataloader.sampler': {'type': 'evilmod.touch'},
    'test_dataloader.collate_fn': {'type': 'evilmod.touch'},
    'val_dataloader.dataset.type': 'evilmod.touch',
    'test_evaluator.type': 'evilmod.touch',
    'val_evaluator.type': 'evilmod.touch',
    'visualizer.type': 'evilmod.touch',
    'visualizer.vis_backends': [{'type': 'evilmod.touch'}],
    'optim_wrapper.constructor': 'evilmod.touch',
    'param_scheduler': [{'type': 'evilmod.touch'}],
    'default_hooks.logger.type': 'evilmod.touch',
    'runner_type': 'evilmod.touch',
    # undotted: mmengine imports a module of that name
    'model.decode_head.type#undotted': 'evilmod',
    # scopes and imports
    'model.decode_head._scope_': 'evilmod',
    'custom_imports': {'imports': ['evilmod'], 'allow_failed_imports': False},
    'default_scope': 'evilmod',
}


def _set(data, dotted, value):
    keys = dotted.split('#')[0].split('.')
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('stored_types')
    marker = tmp / 'markers'
    marker.mkdir()
    package = tmp / 'lib' / 'evilmod'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text(PACKAGE.format(marker=str(marker)))
    (package / 'registry.py').write_text(PACKAGE.format(marker=str(marker)))
    sys.path.insert(0, str(tmp / 'lib'))  # importable, as an installed package would be

    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    cfg.model.backbone.channels = (8, 8, 16, 16)
    cfg.model.decode_head.update(in_channels=16, channels=8)
    cfg.model.auxiliary_head.update(in_channels=16, channels=8)
    cfg.test_dataloader.dataset.update(data_root=str(tmp / 'synthetic'), num_images=2, img_size=(32, 64))
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.val_dataloader = copy.deepcopy(cfg.test_dataloader)
    model = build_model(cfg).eval()
    data = config_to_data(cfg)
    meta = dict(dataset_meta=dict(classes=[f'c{i}' for i in range(9)], palette=[[i * 20, 0, 0] for i in range(9)]))
    torch.save({'state_dict': model.state_dict(), 'meta': dict(meta, cfg=data)}, tmp / 'good.pth')

    paths = {}
    for key, value in POISON.items():
        poisoned = copy.deepcopy(data)
        _set(poisoned, key, value)
        path = tmp / f'evil_{len(paths)}.pth'
        torch.save({'state_dict': model.state_dict(), 'meta': dict(meta, cfg=poisoned)}, path)
        paths[key] = path
    images = tmp / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), np.full((32, 64, 3), 90, np.uint8))
    yield tmp, marker, paths, images
    sys.path.remove(str(tmp / 'lib'))


def _assert_clean(marker):
    assert not list(marker.iterdir()), f'a stored config ran code: {sorted(p.name for p in marker.iterdir())}'
    assert 'evilmod' not in sys.modules


def test_the_clean_checkpoint_works(setup):
    from seg.apis import evaluate

    tmp, marker, _, _ = setup
    metrics = evaluate(str(tmp / 'good.pth'), num_workers=0)
    assert set(metrics) >= {'mIoU', 'aAcc'}
    _assert_clean(marker)


@pytest.mark.parametrize('key', list(POISON))
def test_a_poisoned_stored_config_imports_and_calls_nothing(setup, key, tmp_path):
    from seg.apis import evaluate
    from seg.apis.benchmark import BenchmarkSettings, run_benchmark
    from seg.apis.inference import infer_paths
    from seg.apis.visualize import visualize_attention

    _, marker, paths, images = setup
    ckpt = str(paths[key])
    shown = key.split('#')[0]
    calls = {
        'eval': lambda: evaluate(ckpt, num_workers=0),
        'infer': lambda: infer_paths(ckpt, str(images), str(tmp_path / 'infer'), num_workers=0, progress=False),
        'visualise': lambda: visualize_attention(ckpt, str(images / 'a.png'), str(tmp_path / 'vis'),
                                                 with_grad_cam=False),
    }
    for tool, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert ckpt in message, (tool, message)
        assert shown.split('.')[-1] in message, (tool, message)  # the key path is named
        _assert_clean(marker)
    # The benchmark builds from the config on its command line; the stored one is not used at all.
    settings = BenchmarkSettings(config=os.path.join(ROOT, 'configs', 'demo_ccnet.py'), ckpt=ckpt, shape=(32, 64),
                                 repeat=1, iters=1, warmup=0, cfg_options={
                                     'model.backbone.channels': (8, 8, 16, 16), 'model.decode_head.in_channels': 16,
                                     'model.decode_head.channels': 8, 'model.auxiliary_head.in_channels': 16,
                                     'model.auxiliary_head.channels': 8})
    run_benchmark(settings)
    _assert_clean(marker)


def test_a_comparisons_collect_step_checks_runs_and_plan(setup, tmp_path):
    """``tools/compare.py --collect`` evaluates a run's final checkpoint (its stored config checked) and
    rebuilds the models from ``plan.json`` (a stored config too: checked the same way)."""
    import json

    from seg.apis.compare import collect_comparison
    from seg.engine.checkpoint import load_checkpoint

    tmp, marker, paths, _ = setup
    model = torch.load(tmp / 'good.pth', weights_only=True)['meta']['cfg']['model']
    out = tmp_path / 'cmp'
    run_dir = out / 'runs' / 'x' / 'seed0'
    run_dir.mkdir(parents=True)
    torch.save(load_checkpoint(paths['model.decode_head.type']), run_dir / 'iter_1.pth')
    plan = dict(models=[dict(label='x', kind='head', name='CCHead', options={}, model=model)], classes=[],
                context_pair=[], schedule={}, command='', backbone='demo', size=[32, 64],
                profile=dict(device='cpu', batch=1, warmup=0, repeat=0, bootstrap=10, num_workers=0,
                             precision='fp32', channels_last=False),
                runs=[dict(label='x', seed=0, dir='runs/x/seed0', iters=1)])
    (out / 'plan.json').write_text(json.dumps(plan))
    with pytest.raises(ValueError, match=r'decode_head\.type .*dotted'):
        collect_comparison(out, log=lambda m: None)
    _assert_clean(marker)
    plan['models'][0]['model'] = dict(model, decode_head=dict(model['decode_head'], type='evilmod.touch'))
    (out / 'plan.json').write_text(json.dumps(plan))
    with pytest.raises(ValueError, match=r'plan\.json: model\.decode_head\.type'):
        collect_comparison(out, log=lambda m: None)
    _assert_clean(marker)


@pytest.mark.parametrize('tool', ['eval', 'infer', 'visualize_attention'])
def test_the_tools_refuse_with_the_key_and_value(setup, tool, tmp_path):
    _, marker, paths, images = setup
    ckpt = str(paths['model.decode_head.type'])
    args = {'eval': ['tools/eval.py', '--ckpt', ckpt],
            'infer': ['tools/infer.py', '--ckpt', ckpt, '--input', str(images), '--output', str(tmp_path / 'o')],
            'visualize_attention': ['tools/visualize_attention.py', '--ckpt', ckpt, '--image',
                                    str(images / 'a.png'), '--out', str(tmp_path / 'v'), '--no-grad-cam']}[tool]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(marker.parent / 'lib')]), OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "model.decode_head.type = 'evilmod.touch' is a dotted or scoped name" in out.stderr
    assert not list(marker.iterdir())


@pytest.mark.parametrize('path', sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                                           if '_base_' not in p))
def test_every_shipped_config_passes_the_check(path):
    data = config_to_data(load_config(path))
    check_stored_config(data, path)
    assert config_from_data(data, path).to_dict() == data


def test_registered_names_pass_and_others_are_named():
    good = {'model': {'type': 'EncoderDecoder', 'decode_head': {'type': 'CCHead'}},
            'optim_wrapper': {'type': 'SegOptimWrapper', 'optimizer': {'type': 'SGD'}},
            'train_dataloader': {'dataset': {'pipeline': [{'type': 'HorizontalFlip'}, {'type': 'RandomFlip'}]}},
            'default_scope': 'seg'}
    check_stored_config(good, 'f.pth')
    for bad, match in [({'model': {'type': 'seg.EncoderDecoder'}}, r"model\.type = 'seg\.EncoderDecoder' is a dotted"),
                       ({'model': {'type': 'os'}}, r"model\.type = 'os' is not a registered type"),
                       ({'a': [{'b': {'type': 3}}]}, r'a\[0\]\.b\.type = 3 is not a name'),
                       ({'model': {'type': 'mmseg::FCNHead'}}, 'dotted or scoped'),
                       ({'x': {'_scope_': 'seg'}}, r'x\._scope_ .* refused'),
                       ({'default_scope': 'mmseg'}, "default_scope = 'mmseg'")]:
        with pytest.raises(ValueError, match=match) as info:
            check_stored_config(bad, 'f.pth')
        assert str(info.value).startswith('f.pth: ')
