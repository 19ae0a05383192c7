"""Attention heatmaps (weights recomputed from hooked q / k equal the ops), the visualiser, training
curves and evaluation plots, on a tiny CCNet trained for a few steps."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from seg.models.attention import list_attention

from .conftest import ROOT, tiny_demo_config


def _run_tool(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _png(path, shape=None):
    img = cv2.imread(str(path))
    assert img is not None, f'{path} missing or unreadable'
    if shape is not None:
        assert img.shape[:2] == tuple(shape), (path, img.shape)
    assert img.astype(np.float64).var() > 0, f'{path} is blank'
    return img


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A tiny CCNet (R=2) trained for 4 iterations, validated at 2 and 4."""
    from seg.apis import train

    tmp = tmp_path_factory.mktemp('viz')
    config = tmp / 'tiny_ccnet.py'
    config.write_text(tiny_demo_config(tmp / 'synthetic', loop='IterBasedTrainLoop', val_interval=2, save_best=True))
    work = tmp / 'work'
    runner = train(str(config), work_dir=str(work))
    image = tmp / 'synthetic' / 'img_dir' / 'val' / '00001.png'
    return dict(ckpt=str(work / f'iter_{runner.iter}.pth'), work=work, image=image, tmp=tmp, config=config)


# ----------------------------------------------------------------------------- attention math
def test_criss_cross_pixel_weights_times_values_equal_the_op():
    from seg.ops import (
        criss_cross_attention,
        criss_cross_attention_lse,
        criss_cross_attention_reference,
        criss_cross_pixel_map,
        criss_cross_pixel_weights,
        criss_cross_positions,
        criss_cross_weights,
    )

    g = torch.Generator().manual_seed(0)
    b, c, cv, h, w = 2, 4, 5, 5, 7
    q, k = torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)
    v = torch.randn(b, cv, h, w, generator=g)
    out = criss_cross_attention(q, k, v)
    for op in (criss_cross_attention_lse, criss_cross_attention_reference):
        torch.testing.assert_close(op(q, k, v), out, rtol=1e-4, atol=1e-5)
    full = criss_cross_weights(q, k)  # [B, H, W, H + W]
    torch.testing.assert_close(full.sum(-1), torch.ones(b, h, w))
    for i, j in ((0, 0), (2, 3), (4, 6), (1, 5)):
        weights = criss_cross_pixel_weights(q, k, i, j)  # [B, H + W - 1]
        ys, xs = criss_cross_positions(h, w, i, j)
        values = v[:, :, ys, xs]  # [B, Cv, H + W - 1]
        torch.testing.assert_close(torch.einsum('bn,bcn->bc', weights, values), out[:, :, i, j],
                                   rtol=1e-5, atol=1e-6)
        # The laid-out map and the all-pixel weights say the same.
        pixel_map = criss_cross_pixel_map(q, k, i, j)  # [B, H, W]
        torch.testing.assert_close(torch.einsum('bhw,bchw->bc', pixel_map, v), out[:, :, i, j],
                                   rtol=1e-5, atol=1e-6)
        as_map = torch.zeros(b, h, w)
        as_map[:, :, j] += full[:, i, j, :h]
        as_map[:, i, :] += full[:, i, j, h:]
        torch.testing.assert_close(as_map, pixel_map)
        assert (pixel_map[:, (np.arange(h) != i)][:, :, np.arange(w) != j] == 0).all()  # zero off the cross
    with pytest.raises(ValueError, match='outside'):
        criss_cross_pixel_weights(q, k, h, 0)


def test_effective_map_is_the_composition_of_the_passes():
    from seg.ops import criss_cross_effective_map, criss_cross_pixel_map, criss_cross_weights

    g = torch.Generator().manual_seed(1)
    h, w = 4, 6
    qk = [(torch.randn(1, 3, h, w, generator=g), torch.randn(1, 3, h, w, generator=g)) for _ in range(3)]
    attns = [criss_cross_weights(q, k) for q, k in qk]

    def dense(q, k):  # [N, N] attention matrix built row by row from the pixel maps
        return torch.stack([criss_cross_pixel_map(q, k, i, j)[0].reshape(-1) for i in range(h) for j in range(w)])

    mats = [dense(q, k) for q, k in qk]
    i, j = 1, 2
    one = criss_cross_effective_map(attns[:1], i, j)[0]
    torch.testing.assert_close(one, criss_cross_pixel_map(*qk[0], i, j)[0])
    assert int((one > 0).sum()) == h + w - 1  # R = 1: only the cross
    for r in (2, 3):
        eff = criss_cross_effective_map(attns[:r], i, j)[0]
        expected = torch.eye(h * w)[i * w + j]
        for m in reversed(mats[:r]):  # row of A_r ... A_1
            expected = expected @ m
        torch.testing.assert_close(eff.reshape(-1), expected, rtol=1e-5, atol=1e-7)
        assert (eff > 0).all()  # R >= 2: the whole map
        torch.testing.assert_close(eff.sum(), torch.tensor(1.0))


def test_position_nonlocal_and_channel_rows_equal_the_ops():
    from seg.models.attention import CAM, NonLocal
    from seg.ops import (
        channel_attention,
        channel_attention_weights,
        concatenation_attention,
        dot_product_attention,
        position_attention,
        position_attention_row,
    )

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, c, 5, 6, generator=g) for c in (3, 3, 4))
    out = position_attention(q, k, v, scale=0.5)
    for i, j in ((0, 0), (3, 4)):
        row = position_attention_row(q, k, i, j, 0.5)  # [1, H, W]
        torch.testing.assert_close(torch.einsum('bhw,bchw->bc', row, v), out[:, :, i, j], rtol=1e-5, atol=1e-6)

    x = torch.randn(1, 8, 5, 6, generator=g)
    for mode in ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation'):
        block = NonLocal(8, reduction=2, mode=mode).eval()
        with torch.no_grad():
            gx = block.g(x)  # [1, Ci, H, W]
            if mode == 'gaussian':
                y = position_attention(x, x, gx)
            elif mode == 'embedded_gaussian':
                y = position_attention(block.theta(x), block.phi(x), gx, scale=block.inter ** -0.5)
            elif mode == 'dot_product':
                y = dot_product_attention(block.theta(x), block.phi(x), gx)
            else:
                y = concatenation_attention(block.theta(x), block.phi(x), gx, block.concat_project.weight.view(2, -1))
            row = block.maps({'': [x]}, lambda h, w: (2, 3))[''].values  # [H, W]: what the visualiser draws
        torch.testing.assert_close(torch.einsum('hw,bchw->bc', row, gx), y[:, :, 2, 3], rtol=1e-4, atol=1e-6)

    a = channel_attention_weights(x)  # [1, C, C]
    torch.testing.assert_close(torch.einsum('bcd,bdhw->bchw', a, x), channel_attention(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(CAM(8).maps({'': [x]})['channels'].values, a[0].mean(dim=0))


# ---------------------------------------------------------------------------------------- tools
def test_visualize_attention_tool_on_trained_ccnet(tiny_run, tmp_path):
    out = tmp_path / 'viz'
    image = cv2.imread(str(tiny_run['image']))
    h, w = image.shape[:2]
    # One legible panel figure per point (issue 21).
    proc = _run_tool('tools/visualize_attention.py', '--ckpt', tiny_run['ckpt'], '--image', str(tiny_run['image']),
                     '--points', '10,20', '50,8', '--class-id', 'road', '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / '00001_attention.json').read_text())
    figures = {f['file']: f for f in manifest['files'] if 'panels' in f}
    assert set(figures) == {'00001_x10_y20_panels.png', '00001_x50_y8_panels.png'}
    for name, entry in figures.items():
        x, y = entry['point']
        figure = _png(out / name)
        assert figure.shape[1] >= 768  # upscaled: each panel 780 px wide, two columns
        titles = [p['title'] for p in entry['panels']]
        assert titles[0].startswith('input') and titles[1].startswith('prediction')
        by_map = {p['map']: p for p in entry['panels'] if p.get('module') == 'decode_head.context'}
        assert set(by_map) == {'pass1', 'pass2', 'effective-R2'}
        for key, panel in by_map.items():
            assert f'point ({x}, {y})' in panel['title'] and key in panel['title'] and 'scale' in panel['title']
            assert panel['resolution'] == [4, 8]  # the 32x64 image at output stride 8
        assert any(p.get('what') == 'Grad-CAM' and "'road'" in p['title'] for p in entry['panels'])
    pass1 = {p['map']: p for p in figures['00001_x10_y20_panels.png']['panels'] if 'map' in p}
    assert pass1['pass1']['feature_pixel'] == [2, 1]
    assert pass1['pass1']['min'] == 0.0 and pass1['effective-R2']['min'] > 0.0  # one pass: the cross; two: all
    _png(out / '00001_prediction.png', (h, 2 * w + 4))

    # --single: one file per map at the image's size, for scripts.
    single = tmp_path / 'single'
    proc = _run_tool('tools/visualize_attention.py', '--ckpt', tiny_run['ckpt'], '--image', str(tiny_run['image']),
                     '--points', '10,20', '50,8', '--class-id', 'road', '--out', str(single), '--single')
    assert proc.returncode == 0, proc.stderr[-3000:]
    for x, y in ((10, 20), (50, 8)):
        for kind in ('pass1', 'pass2', 'effective-R2'):
            _png(single / f'00001_criss_cross_decode_head-context_{kind}_x{x}_y{y}.png', (h, w))
    _png(single / '00001_gradcam_road.png', (h, w))
    _png(single / '00001_prediction.png', (h, 2 * w + 4))
    assert not list(single.glob('*_panels.png'))
    manifest = json.loads((single / '00001_attention.json').read_text())
    by_file = {f['file']: f for f in manifest['files']}
    pass1 = by_file['00001_criss_cross_decode_head-context_pass1_x10_y20.png']
    effective = by_file['00001_criss_cross_decode_head-context_effective-R2_x10_y20.png']
    # True resolution of the module: the 32x64 image at output stride 8.
    assert pass1['resolution'] == [4, 8] and pass1['feature_pixel'] == [2, 1]
    assert pass1['min'] == 0.0 and effective['min'] > 0.0  # one pass: the cross only; two: everywhere
    proc = _run_tool('tools/visualize_attention.py', '--ckpt', tiny_run['ckpt'], '--image', str(tiny_run['image']),
                     '--points', f'{w},0', '--out', str(out))
    assert proc.returncode != 0 and 'outside' in proc.stderr


@pytest.mark.parametrize('decode_head, backbone_attention, expected', [
    (dict(type='DAHead', pam_reduction=2), dict(type='cbam', reduction=4),
     ['pam_decode_head-pam_x20_y12', 'cam_decode_head-cam_channels']
     + [f'cbam_backbone-layer4-{b}-attn_{m}' for b in (0, 1) for m in ('channels', 'spatial')]),
    (dict(type='NLHead'), None, ['nonlocal_decode_head-context_x20_y12']),
    (dict(type='AttentionHead', attention=dict(type='criss_cross', reduction=4)), None,
     [f'criss_cross_decode_head-context_{k}_x20_y12' for k in ('pass1', 'pass2', 'effective-R2')]),
    (dict(type='AttentionHead', attention=dict(type='se', reduction=2)), None, ['se_decode_head-context_channels']),
    (dict(type='AttentionHead', attention=dict(type='eca')), None, ['eca_decode_head-context_channels']),
    (dict(type='AttentionHead', attention=dict(type='coord')), None, ['coord_decode_head-context_spatial']),
    (dict(type='AttentionHead', attention=dict(type='gam', rate=2)), None,
     ['gam_decode_head-context_channels', 'gam_decode_head-context_spatial']),
    (dict(type='AttentionHead', attention=dict(type='simam')), None, ['simam_decode_head-context_spatial']),
])
def test_visualize_every_supported_module(tiny_run, tmp_path, decode_head, backbone_attention, expected):
    """The checkpoint's model decides which maps are drawn (weights straight from the model, not trained)."""
    from seg.apis.model_io import build_model
    from seg.apis.visualize import visualize_attention

    cfg = Config.fromfile(str(tiny_run['config']))
    cfg.model.decode_head = dict(decode_head, in_channels=16, channels=8, num_classes=9, in_index=3)
    cfg.model.loss_weights = dict(out=1.0, aux=0.4)
    if backbone_attention:
        cfg.model.backbone.block_attention = backbone_attention
        cfg.model.backbone.attention_stages = (4,)
    model = build_model(cfg)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text)), ckpt)
    out = tmp_path / 'viz'
    result = visualize_attention(str(ckpt), str(tiny_run['image']), str(out), points=[(20, 12)], device='cpu',
                                 single=True)
    names = {p.split('/')[-1] for p in result['attention']}
    assert names == {f'00001_{e}.png' for e in expected}
    for name in names:
        _png(out / name, (32, 64) if ('_x' in name or 'spatial' in name) else None)
    assert result['gradcam'] and result['prediction']
    # The panel figure holds the same maps, one panel each, and Grad-CAM.
    result = visualize_attention(str(ckpt), str(tiny_run['image']), str(tmp_path / 'panels'), points=[(20, 12)],
                                 device='cpu')
    entry = json.loads(open(result['manifest'][0]).read())['files'][-1]
    drawn = {'_'.join(part for part in (p['type'], p['module'].replace('.', '-'), p['map'],
                                        *(('x20', 'y12') if p['kind'] == 'point' else ())) if part)
             for p in entry['panels'] if 'type' in p}
    assert drawn == set(expected)
    assert any(p.get('what') == 'Grad-CAM' for p in entry['panels'])
    _png(result['panels'][0])


@pytest.mark.parametrize('name', list_attention())
def test_every_module_of_the_zoo_is_drawn(tiny_run, tmp_path, name):
    """Read from the modules' declarations: a module added to the zoo is drawn with no change here."""
    from seg.apis.model_io import build_model
    from seg.apis.visualize import visualize_attention

    cfg = Config.fromfile(str(tiny_run['config']))
    cfg.model.decode_head = dict(type='AttentionHead', attention=dict(type=name), in_channels=16, channels=16,
                                 num_classes=9, in_index=3)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=build_model(cfg).state_dict(), meta=dict(cfg=cfg.to_dict())), ckpt)
    result = visualize_attention(str(ckpt), str(tiny_run['image']), str(tmp_path / 'viz'), points=[(20, 12)],
                                 device='cpu', with_grad_cam=False, single=True)
    drawn = [os.path.basename(p) for p in result['attention']]
    prefix = f'00001_{name}_decode_head-context'
    if name == 'dual':  # its maps are those of its PAM and CAM
        assert {'00001_pam_decode_head-context-pam_x20_y12.png',
                '00001_cam_decode_head-context-cam_channels.png'} <= set(drawn)
    else:
        assert drawn and all(p.startswith(prefix) for p in drawn), drawn
    for path in result['attention']:
        _png(path)
    # The same maps as panels of one figure (the explorer draws these panels too).
    panels = visualize_attention(str(ckpt), str(tiny_run['image']), str(tmp_path / 'panels'), points=[(20, 12)],
                                 device='cpu', with_grad_cam=False)
    entry = json.loads(open(panels['manifest'][0]).read())['files'][-1]
    assert len([p for p in entry['panels'] if 'type' in p]) == len(drawn)
    assert _png(panels['panels'][0]).shape[1] >= 768


def test_plot_logs_and_eval_plots(tiny_run, tmp_path):
    proc = _run_tool('tools/plot_logs.py', str(tiny_run['work']), '--out', str(tmp_path / 'curves'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ('loss', 'lr', 'miou'):
        _png(tmp_path / 'curves' / f'{name}.png')
    from seg.apis import evaluate
    from seg.visualization.plots import load_scalars, plot_training_curves

    train, val = load_scalars(str(tiny_run['work']))
    assert [e['step'] for e in train] == [1, 2, 3, 4] and [e['step'] for e in val] == [2, 4]

    evaluate(tiny_run['ckpt'], plots=str(tmp_path / 'plots'), out=str(tmp_path / 'm.json'), num_workers=0)
    cm = _png(tmp_path / 'plots' / 'confusion_matrix.png')
    _png(tmp_path / 'plots' / 'per_class_iou.png')
    assert cm.shape[0] >= 300 and cm.shape[1] >= 300
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        plot_training_curves(str(tmp_path / 'plots'), str(tmp_path / 'nope'))
