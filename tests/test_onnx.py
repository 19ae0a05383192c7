"""ONNX export of every head (CCNet's criss-cross included): onnxruntime reproduces PyTorch's logits
within 1e-4, at dynamic sizes; tools/infer.py --onnx runs folder inference through onnxruntime."""
import os
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from seg.apis.model_io import build_model
from seg.engine.config import load_config
from seg.models.attention import list_attention
from seg.registry import MODELS

from .conftest import ROOT, randomize

pytestmark = pytest.mark.slow

HEADS = {
    'fcn': dict(type='FCNHead', num_convs=2, concat_input=True),
    'ccnet': dict(type='CCHead', recurrence=2),
    'danet': dict(type='DAHead'),
    'nonlocal': dict(type='NLHead'),
}


def tiny_checkpoint(tmp_path, head: dict, name: str) -> str:
    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    cfg.model.backbone.channels = (8, 8, 16, 16)
    cfg.model.decode_head = dict(head, in_channels=16, channels=16, num_classes=9, in_index=3)
    cfg.model.auxiliary_head = dict(cfg.model.auxiliary_head, in_channels=16, channels=8)
    model = randomize(build_model(cfg)).eval()
    path = tmp_path / f'{name}.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.to_dict(), 'dataset_meta': dict(
        classes=[f'c{i}' for i in range(9)], palette=[[i * 20, 0, 0] for i in range(9)])}}, path)
    return str(path)


@pytest.mark.parametrize('name', sorted(HEADS))
def test_each_head_exports_and_onnxruntime_matches(name, tmp_path):
    from seg.apis import init_model
    from seg.apis.export import export_onnx

    ckpt = tiny_checkpoint(tmp_path, HEADS[name], name)
    out = export_onnx(ckpt, str(tmp_path / f'{name}.onnx'), shape=(64, 96), dynamic=True)
    model = init_model(ckpt)
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    for shape in ((1, 3, 64, 96), (1, 3, 48, 80)):  # the example size, and another one
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[2]))
        with torch.no_grad():
            expected = model(x, mode='tensor').numpy()
        got = session.run(None, {'input': x.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4, f'{name} at {shape}: {np.abs(got - expected).max():.2e}'


class _ZooHeads(nn.Module):
    """One backbone feeding an AttentionHead per module of the zoo: one export covers them all."""

    def __init__(self, names):
        super().__init__()
        self.backbone = MODELS.build(dict(type='DilatedResNet', depth=18, channels=(8, 8, 16, 32)))
        self.heads = nn.ModuleList(MODELS.build(dict(type='AttentionHead', in_channels=32, channels=32, num_classes=5,
                                                     attention=dict(type=n))) for n in names)

    def forward(self, x):
        feats = self.backbone(x)
        return tuple(head(feats)['out'] for head in self.heads)


def test_every_attention_zoo_head_exports(tmp_path):
    import warnings

    names = list_attention()
    model = randomize(_ZooHeads(names)).eval()
    x = torch.randn(1, 3, 48, 64)
    path = tmp_path / 'zoo.onnx'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (x,), str(path), dynamo=True, output_names=names, verbose=False)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    for name, a, b in zip(names, got, expected):
        assert np.abs(a - b.numpy()).max() < 1e-4, f'{name}: {np.abs(a - b.numpy()).max():.2e}'


def test_infer_through_onnxruntime_writes_what_pytorch_writes(tmp_path):
    from seg.apis import infer_paths
    from seg.apis.export import export_onnx

    ckpt = tiny_checkpoint(tmp_path, HEADS['ccnet'], 'cc')
    onnx_path = export_onnx(ckpt, str(tmp_path / 'cc.onnx'), shape=(64, 96), dynamic=True)
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate(((48, 64), (64, 96), (40, 72))):
        cv2.imwrite(str(images / f'{i}.png'), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    (images / 'broken.png').write_bytes(b'nope')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, 'tools/infer.py', '--onnx', onnx_path, '--input', str(images),
                           '--output', str(tmp_path / 'ort')], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'processed 3 image(s), skipped 1' in proc.stdout and 'onnxruntime' in proc.stdout
    infer_paths(ckpt, str(images), str(tmp_path / 'torch'), precision='fp32', fold_bn=False, num_workers=0,
                progress=False)
    for i in range(3):
        for kind in ('label', 'color', 'overlay'):
            assert (tmp_path / 'ort' / f'{i}_{kind}.png').is_file()
        a = cv2.imread(str(tmp_path / 'ort' / f'{i}_label.png'), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / 'torch' / f'{i}_label.png'), cv2.IMREAD_UNCHANGED)
        assert (a == b).mean() > 0.999
