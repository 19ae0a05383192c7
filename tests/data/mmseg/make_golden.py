"""Compute the golden logits of tests/test_convert.py with mmsegmentation itself. Not run by CI.

In a throwaway venv outside the repository:

    python3 -m venv /tmp/mmseg-venv
    /tmp/mmseg-venv/bin/pip install torch==2.14.1 mmcv-lite==2.1.0 mmsegmentation==1.2.2 mmengine ftfy regex
    # mmcv-lite has no compiled ops and only PSANet needs one (PSAMask): a stub whose every function
    # raises is enough, and PSAMask's two kernels are given below as plain loops over mmcv's indexing
    printf 'def __getattr__(name):\n    if name.startswith("__"):\n        raise AttributeError(name)\n    def missing(*a, **k):\n        raise RuntimeError(name)\n    return missing\n' \
        > /tmp/mmseg-venv/lib/python3.11/site-packages/mmcv/_ext.py
    /tmp/mmseg-venv/bin/python tests/data/mmseg/make_golden.py [ARCH ...]

Without arguments it makes every architecture of ``mmseg_layout.ARCHS``. For each it writes ``<arch>.json`` (the tiny model's mmsegmentation key layout, seeds,
shapes) and ``<arch>_logits.npy`` (mmsegmentation's ``encode_decode`` logits of the random input,
eval mode, fp32), and ``<arch>_r50_layout.json`` / ``ccnet_r101_layout.json`` (the key layout of the
full-size models the published checkpoints have).
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # tests/, for mmseg_layout
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402
from mmseg_layout import ARCHS, GOLDEN_STRIDE, INPUT_SHAPES, random_input, random_weights  # noqa: E402

register_all_modules()
NORM = dict(type='BN', requires_grad=True)
LOSS = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)


def _psamask_forward(mask, buffer, psa_type, num_, h_feature, w_feature, h_mask, w_mask, half_h_mask,
                     half_w_mask):
    """mmcv's ``psamask_forward`` kernel as loops (its CPU kernel's indexing): mask channel
    ``(hi, wi)`` of pixel ``(h, w)`` lands at the feature position ``(hi + h - half_h, wi + w - half_w)``;
    ``collect`` (0) writes it to ``buffer[n, that position, h, w]``, ``distribute`` (1) to
    ``buffer[n, h * W + w, that position]``."""
    for n in range(num_):
        for h in range(h_feature):
            for w in range(w_feature):
                for hi in range(max(0, half_h_mask - h), min(h_mask, h_feature + half_h_mask - h)):
                    for wi in range(max(0, half_w_mask - w), min(w_mask, w_feature + half_w_mask - w)):
                        fh, fw = hi + h - half_h_mask, wi + w - half_w_mask
                        value = mask[n, hi * w_mask + wi, h, w]
                        if psa_type == 0:
                            buffer[n, fh * w_feature + fw, h, w] = value
                        else:
                            buffer[n, h * w_feature + w, fh, fw] = value


def mmseg_model(arch: str, width: int, depth: int = 50, mask_size: tuple = (97, 97)) -> dict:
    """mmsegmentation's model config of ``arch`` on ResNetV1c-D8 with base width ``width`` (64 = real):
    the published ``configs/_base_/models/<arch>_r50-d8.py`` with every width scaled."""
    scale = width / 64
    c4, c3, ch, aux = int(2048 * scale), int(1024 * scale), int(512 * scale), int(256 * scale)
    head = dict(in_channels=c4, in_index=3, channels=ch, dropout_ratio=0.1, num_classes=19, norm_cfg=NORM,
                align_corners=False, loss_decode=LOSS)
    head.update({
        'fcn': dict(type='FCNHead', num_convs=2, concat_input=True),
        'ccnet': dict(type='CCHead', recurrence=2, concat_input=True),
        'danet': dict(type='DAHead', pam_channels=ch // 8),
        'nonlocal': dict(type='NLHead', dropout_ratio=0.1, reduction=2, use_scale=True, mode='embedded_gaussian'),
        'psp': dict(type='PSPHead', pool_scales=(1, 2, 3, 6)),
        'aspp': dict(type='ASPPHead', dilations=(1, 12, 24, 36)),
        'ocr': dict(type='OCRHead', ocr_channels=int(256 * scale)),
        'ema': dict(type='EMAHead', channels=int(256 * scale), ema_channels=ch, num_bases=64, num_stages=3,
                    momentum=0.1),
        'gc': dict(type='GCHead', ratio=1 / 4., pooling_type='att', fusion_types=('channel_add',)),
        'isa': dict(type='ISAHead', isa_channels=int(256 * scale), down_factor=(8, 8)),
        'dnl': dict(type='DNLHead', reduction=2, use_scale=True, mode='embedded_gaussian'),
        'ann': dict(type='ANNHead', in_channels=[c3, c4], in_index=[2, 3], project_channels=int(256 * scale),
                    query_scales=(1,), key_pool_scales=(1, 3, 6, 8)),
        'psa': dict(type='PSAHead', mask_size=mask_size, psa_type='bi-direction', compact=False, shrink_factor=2,
                    normalization_factor=1.0, psa_softmax=True),
        'apc': dict(type='APCHead', pool_scales=(1, 2, 3, 6)),
        'dm': dict(type='DMHead', filter_sizes=(1, 3, 5, 7)),
    }[arch])
    backbone = dict(type='ResNetV1c', depth=depth, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
                    strides=(1, 2, 1, 1), norm_cfg=NORM, norm_eval=False, style='pytorch', contract_dilation=True,
                    stem_channels=width, base_channels=width)
    if arch == 'ocr':  # mmsegmentation's CascadeEncoderDecoder: an FCN head's soft regions feed the OCR head
        fcn = dict(type='FCNHead', in_channels=c3, in_index=2, channels=aux, num_convs=1, concat_input=False,
                   dropout_ratio=0.1, num_classes=19, norm_cfg=NORM, align_corners=False,
                   loss_decode=dict(LOSS, loss_weight=0.4))
        return dict(type='CascadeEncoderDecoder', num_stages=2, data_preprocessor=None, backbone=backbone,
                    decode_head=[fcn, head])
    return dict(
        type='EncoderDecoder', data_preprocessor=None, backbone=backbone, decode_head=head,
        auxiliary_head=dict(type='FCNHead', in_channels=c3, in_index=2, channels=aux, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=19, norm_cfg=NORM,
                            align_corners=False, loss_decode=dict(LOSS, loss_weight=0.4)))


def layout(model) -> list:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def main(archs: list[str]) -> None:
    import mmcv.ops.psa_mask

    def forward(mask, buffer, **kw):  # in place, as the kernel
        out = buffer.numpy()
        _psamask_forward(mask.numpy(), out, **kw)

    mmcv.ops.psa_mask.ext_module.psamask_forward = forward
    weight_seed, input_seed = 1234, 99
    for arch in archs:
        shape = INPUT_SHAPES.get(arch, (1, 3, 32, 48))
        # PSANet's golden uses a 7x9 mask, smaller than the 9x13 feature, so that its clipping counts
        model = MODELS.build(mmseg_model(arch, 8, mask_size=(7, 9))).eval()
        keys = layout(model)
        weights = random_weights(keys, weight_seed)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
        x = torch.from_numpy(random_input(shape, input_seed))
        with torch.no_grad():
            logits = model.encode_decode(x, [dict(img_shape=shape[2:], ori_shape=shape[2:])])
        stride = GOLDEN_STRIDE.get(arch, 1)  # every stride-th row and column keeps the file small
        np.save(os.path.join(HERE, f'{arch}_logits.npy'), logits[..., ::stride, ::stride].numpy().astype(np.float32))
        with open(os.path.join(HERE, f'{arch}.json'), 'w') as f:
            json.dump(dict(arch=arch, width=8, weight_seed=weight_seed, input_seed=input_seed, input_shape=shape,
                           logits_stride=stride, mmseg='1.2.2', torch=torch.__version__, keys=keys), f)
        with torch.device('meta'):
            full = MODELS.build(mmseg_model(arch, 64))
        with open(os.path.join(HERE, f'{arch}_r50_layout.json'), 'w') as f:
            json.dump(layout(full), f)
        print(arch, tuple(logits.shape), float(logits.abs().mean()))
    if 'ccnet' in archs:
        with torch.device('meta'):
            full = MODELS.build(mmseg_model('ccnet', 64, depth=101))
        with open(os.path.join(HERE, 'ccnet_r101_layout.json'), 'w') as f:
            json.dump(layout(full), f)


if __name__ == '__main__':
    main(sys.argv[1:] or list(ARCHS))
