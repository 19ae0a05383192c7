"""mmsegmentation's published models run exactly in seg: checkpoints in mmsegmentation's key layout,
with random, perturbed weights and BN statistics, convert, and give mmsegmentation 1.2.2's own logits
(stored in tests/data/mmseg, computed by make_golden.py there) within 1e-4."""
import json
import os

import numpy as np
import pytest
import torch

from seg.apis.convert import convert_checkpoint
from seg.engine.config import load_config
from seg.models.convert import convert_mmseg_state_dict

from .conftest import ROOT
from .mmseg_layout import ARCHS, NEW_ARCHS, random_input, random_weights

DATA = os.path.join(ROOT, 'tests', 'data', 'mmseg')
CONFIGS = {'fcn': 'fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'ccnet': 'ccnet/ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'danet': 'danet/danet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'nonlocal': 'nonlocal/nonlocal_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'psp': 'pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'aspp': 'deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'ocr': 'ocrnet/ocrnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
           'ema': 'emanet/emanet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'gc': 'gcnet/gcnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'isa': 'isanet/isanet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'dnl': 'dnlnet/dnl_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'ann': 'ann/ann_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'psa': 'psanet/psanet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'apc': 'apcnet/apcnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
           'dm': 'dmnet/dmnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'}
HEADS = {'fcn': 'FCNHead', 'ccnet': 'CCHead', 'danet': 'DAHead', 'nonlocal': 'NLHead', 'psp': 'PSPHead',
         'aspp': 'ASPPHead', 'ocr': 'OCRHead', 'ema': 'EMAHead', 'gc': 'GCHead', 'isa': 'ISAHead', 'dnl': 'DNLHead',
         'ann': 'ANNHead', 'psa': 'PSAHead', 'apc': 'APCHead', 'dm': 'DMHead'}
AUX = {'ocr': None}
"""The auxiliary head of an mmsegmentation model, where it is not an FCN head (OCRNet has none: its
FCN stage is the first of the cascade)."""

# The published configs at width 8 (the base width of mmsegmentation's tiny golden models): the
# R-50-D8 structure with every width divided by 8.
TINY = """
_base_ = ['{root}/configs/{config}']
model = dict(backbone=dict(channels=(8, 16, 32, 64), pretrained=None),
             decode_head=dict({head}){aux})
"""
TINY_HEAD = {
    'ocr': 'in_channels=256, channels=64, ocr_channels=32, soft_in_channels=128, soft_channels=32',
    'ema': 'in_channels=256, channels=32, ema_channels=64',
    'isa': 'in_channels=256, channels=64, isa_channels=32',
    'ann': 'in_channels=(128, 256), channels=64, project_channels=32',
    'psa': 'in_channels=256, channels=64, mask_size=(7, 9)',
}
"""Each head's own widths at base width 8 (and PSANet's golden 7x9 mask), as make_golden.py scales them."""


def tiny_config(arch: str) -> str:
    aux = '' if arch in AUX else ', auxiliary_head=dict(in_channels=128, channels=32)'
    return TINY.format(root=ROOT, config=CONFIGS[arch], head=TINY_HEAD.get(arch, 'in_channels=256, channels=64'), aux=aux)


def golden(arch):
    with open(os.path.join(DATA, f'{arch}.json')) as f:
        meta = json.load(f)
    return meta, np.load(os.path.join(DATA, f'{arch}_logits.npy'))


def mmseg_checkpoint(arch, path):
    """An mmsegmentation-layout checkpoint of the tiny model, as mmsegmentation saves them (with a
    config text in its meta, which conversion must never run)."""
    meta, _ = golden(arch)
    weights = random_weights(meta['keys'], meta['weight_seed'])
    torch.save({'state_dict': {k: torch.from_numpy(v) for k, v in weights.items()},
                'meta': {'config': "import os\nos.system('touch never')\n", 'CLASSES': ['road'] * 19}}, path)
    return meta


@pytest.mark.parametrize('arch', ARCHS + NEW_ARCHS)
def test_converted_model_gives_mmsegmentation_logits(arch, tmp_path):
    from seg.apis import inference_model, init_model

    meta, expected = golden(arch)
    mmseg_checkpoint(arch, tmp_path / 'mmseg.pth')
    config = tmp_path / f'{arch}_tiny.py'
    config.write_text(tiny_config(arch))
    out = tmp_path / 'seg.pth'
    convert_checkpoint(str(tmp_path / 'mmseg.pth'), str(out), str(config))
    model = init_model(str(out))
    assert not model.training
    x = torch.from_numpy(random_input(tuple(meta['input_shape']), meta['input_seed']))
    with torch.no_grad():
        logits = model(x, mode='tensor')
    stride = meta.get('logits_stride', 1)  # the new heads' goldens keep every 4th row and column
    logits = logits[..., ::stride, ::stride]
    assert logits.shape == expected.shape
    # within 1e-5 of the logits' scale (DMNet's dynamic filters give logits of ~50 on random weights)
    err = (logits - torch.from_numpy(expected)).abs().max().item() / max(1.0, float(np.abs(expected).max()))
    assert err < 1e-5, f'{arch}: max |seg - mmseg| / scale = {err:.2e}'
    assert not os.path.exists('never')
    # The checkpoint carries what eval / infer need: the config as data, the classes and the palette.
    assert model.dataset_meta['classes'][:2] == ['road', 'sidewalk'] and len(model.dataset_meta['palette']) == 19
    labels = inference_model(model, np.zeros((20, 30, 3), np.uint8))
    assert labels.shape == (20, 30) and labels.max() < 19


@pytest.mark.parametrize('arch, layout, depth', [(a, f'{a}_r50_layout.json', 50) for a in ARCHS + NEW_ARCHS]
                         + [('ccnet', 'ccnet_r101_layout.json', 101)])
def test_full_size_published_layouts_convert_exactly(arch, layout, depth):
    """The real R-50 / R-101 models: every mmsegmentation key has a seg key of the same shape, and back."""
    from seg.apis.model_io import build_model

    with open(os.path.join(DATA, layout)) as f:
        keys = json.load(f)
    with torch.device('meta'):
        state = {k: torch.empty(shape) for k, shape in keys}
        cfg = load_config(os.path.join(ROOT, 'configs', CONFIGS[arch]), {'model.backbone.depth': depth})
        model = build_model(cfg)
    converted, unknown = convert_mmseg_state_dict(state, HEADS[arch], AUX.get(arch, 'FCNHead'))
    own = model.state_dict()
    assert unknown == [] and set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert sum(v.numel() for k, v in own.items() if 'num_batches' not in k) == \
        sum(v.numel() for k, v in state.items() if 'num_batches' not in k)


def test_left_over_and_missing_keys_are_listed(tmp_path):
    mmseg_checkpoint('ccnet', tmp_path / 'mmseg.pth')
    config = tmp_path / 'fcn_tiny.py'
    config.write_text(tiny_config('fcn'))
    with pytest.raises(ValueError, match=r'does not convert .* checkpoint keys left over .*decode_head\.cca\.'):
        convert_checkpoint(str(tmp_path / 'mmseg.pth'), str(tmp_path / 'out.pth'), str(config))
    ckpt = torch.load(tmp_path / 'mmseg.pth')
    del ckpt['state_dict']['decode_head.conv_seg.bias']
    torch.save(ckpt, tmp_path / 'partial.pth')
    config = tmp_path / 'cc_tiny.py'
    config.write_text(tiny_config('ccnet'))
    with pytest.raises(ValueError, match=r"1 model keys missing \['decode_head\.cls\.1\.bias'\]"):
        convert_checkpoint(str(tmp_path / 'partial.pth'), str(tmp_path / 'out.pth'), str(config))
    assert not (tmp_path / 'out.pth').exists()  # a partial load never passes


def test_open_mmlab_imagenet_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """``pretrained='open-mmlab://resnet50_v1c'`` reads mmcv's ResNetV1c file (here a tiny one the test
    writes in its layout) from torch's hub cache, and says where to put it when offline."""
    from seg.models.backbones import DilatedResNet
    from seg.models.weights import OPEN_MMLAB

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    meta, _ = golden('fcn')
    backbone = [(k[len('backbone.'):], s) for k, s in meta['keys'] if k.startswith('backbone.')]
    weights = {k: torch.from_numpy(v) for k, v in random_weights(backbone, 7).items()}
    cache = tmp_path / 'hub' / 'checkpoints' / OPEN_MMLAB['resnet50_v1c'].rsplit('/', 1)[1]

    def offline(*args, **kwargs):
        raise OSError('no network')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(RuntimeError, match=f'Offline\\? Put the file at {cache}'):
        DilatedResNet(depth=50, channels=(8, 16, 32, 64), pretrained='open-mmlab://resnet50_v1c')
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': weights, 'meta': {}}, cache)
    net = DilatedResNet(depth=50, channels=(8, 16, 32, 64), pretrained='open-mmlab://resnet50_v1c')
    assert torch.equal(net.stem[0][0].weight, weights['stem.0.weight'])  # mmcv's stem.0: the first conv
    assert torch.equal(net.stem[1].running_var, weights['stem.7.running_var'])  # stem.7: the last BN
    assert torch.equal(net.layer3[0].downsample[1].weight, weights['layer3.0.downsample.1.weight'])
    with pytest.raises(ValueError, match='unknown weights'):
        DilatedResNet(depth=50, pretrained='open-mmlab://resnet34_v1c')
