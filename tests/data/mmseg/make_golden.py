"""Compute the golden logits of tests/test_convert.py with mmsegmentation itself. Not run by CI.

In a throwaway venv outside the repository:

    python3 -m venv /tmp/mmseg-venv
    /tmp/mmseg-venv/bin/pip install torch==2.14.1 mmcv-lite==2.1.0 mmsegmentation==1.2.2 mmengine ftfy regex
    # mmcv-lite has no compiled ops; FCN / CCNet / DANet / NonLocal need none: a stub is enough
    printf 'def __getattr__(name):\n    raise AttributeError(name)\n' > /tmp/mmseg-venv/lib/python3.11/site-packages/mmcv/_ext.py
    /tmp/mmseg-venv/bin/python tests/data/mmseg/make_golden.py

For each architecture it writes ``<arch>.json`` (the tiny model's mmsegmentation key layout, seeds,
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
from mmseg_layout import ARCHS, random_input, random_weights  # noqa: E402

register_all_modules()
NORM = dict(type='BN', requires_grad=True)
LOSS = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)


def mmseg_model(arch: str, width: int, depth: int = 50) -> dict:
    """mmsegmentation's model config of ``arch`` on ResNetV1c-D8 with base width ``width`` (64 = real)."""
    scale = width / 64
    c4, c3, ch, aux = int(2048 * scale), int(1024 * scale), int(512 * scale), int(256 * scale)
    head = dict(in_channels=c4, in_index=3, channels=ch, dropout_ratio=0.1, num_classes=19, norm_cfg=NORM,
                align_corners=False, loss_decode=LOSS)
    head.update({
        'fcn': dict(type='FCNHead', num_convs=2, concat_input=True),
        'ccnet': dict(type='CCHead', recurrence=2, concat_input=True),
        'danet': dict(type='DAHead', pam_channels=ch // 8),
        'nonlocal': dict(type='NLHead', dropout_ratio=0.1, reduction=2, use_scale=True, mode='embedded_gaussian'),
    }[arch])
    return dict(
        type='EncoderDecoder', data_preprocessor=None,
        backbone=dict(type='ResNetV1c', depth=depth, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
                      strides=(1, 2, 1, 1), norm_cfg=NORM, norm_eval=False, style='pytorch', contract_dilation=True,
                      stem_channels=width, base_channels=width),
        decode_head=head,
        auxiliary_head=dict(type='FCNHead', in_channels=c3, in_index=2, channels=aux, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=19, norm_cfg=NORM,
                            align_corners=False, loss_decode=dict(LOSS, loss_weight=0.4)))


def layout(model) -> list:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def main() -> None:
    shape, weight_seed, input_seed = (1, 3, 32, 48), 1234, 99
    for arch in ARCHS:
        model = MODELS.build(mmseg_model(arch, 8)).eval()
        keys = layout(model)
        weights = random_weights(keys, weight_seed)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
        x = torch.from_numpy(random_input(shape, input_seed))
        with torch.no_grad():
            logits = model.encode_decode(x, [dict(img_shape=shape[2:], ori_shape=shape[2:])])
        np.save(os.path.join(HERE, f'{arch}_logits.npy'), logits.numpy().astype(np.float32))
        with open(os.path.join(HERE, f'{arch}.json'), 'w') as f:
            json.dump(dict(arch=arch, width=8, weight_seed=weight_seed, input_seed=input_seed, input_shape=shape,
                           mmseg='1.2.2', torch=torch.__version__, keys=keys), f)
        with torch.device('meta'):
            full = MODELS.build(mmseg_model(arch, 64))
        with open(os.path.join(HERE, f'{arch}_r50_layout.json'), 'w') as f:
            json.dump(layout(full), f)
        print(arch, tuple(logits.shape), float(logits.abs().mean()))
    with torch.device('meta'):
        full = MODELS.build(mmseg_model('ccnet', 64, depth=101))
    with open(os.path.join(HERE, 'ccnet_r101_layout.json'), 'w') as f:
        json.dump(layout(full), f)


if __name__ == '__main__':
    main()
