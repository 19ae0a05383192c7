"""A one-line model factory, as segmentation-models-pytorch and timm users expect::

    import seg
    model = seg.create_model('ccnet', backbone='r50', num_classes=19, pretrained=True)   # ImageNet weights
    model = seg.create_model('danet', backbone='r101', weights='path/or/url.pth')       # a trained checkpoint
    model = seg.create_model('cbam', backbone='r18', plugin_stages=(2, 3))               # zoo module as plug-in
    seg.list_models()

The names are those of ``tools/compare.py`` (:mod:`seg.models.factory`). The model is the
``EncoderDecoder`` the configs build, in train mode.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from torch import nn

from seg.engine.checkpoint import load_checkpoint, load_state_into
from seg.models.factory import BACKBONES, available_models, backbone_skeleton, model_config

from .model_io import build_model

__all__ = ['create_model', 'list_models']


def list_models(kind: str | None = None) -> list[str]:
    """Every model name :func:`create_model` takes (``kind``: ``'head'`` or ``'attention'`` to filter)."""
    return sorted(n for n, (k, _) in available_models().items() if kind is None or k == kind)


def _weights_file(weights: str | os.PathLike) -> str:
    text = os.fspath(weights)
    if text.startswith(('http://', 'https://')):
        cache = Path(torch.hub.get_dir()) / 'checkpoints' / text.rsplit('/', 1)[-1]
        if not cache.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(text, str(cache), progress=False)
            except Exception as exc:  # noqa: BLE001 - offline, refused: say what to do
                raise RuntimeError(f'could not download {text} ({type(exc).__name__}: {exc}); offline? put the file '
                                   f'at {cache} or pass its local path') from exc
        return str(cache)
    if not os.path.isfile(text):
        raise FileNotFoundError(f'weights {text!r}: no such file')
    return text


_MMSEG_PRESETS = {'nonlocal': 'NLHead', 'criss_cross': 'CCHead'}
"""Attention modules whose ``AttentionHead`` is an mmsegmentation head (its presets in seg.models.heads)."""


def _mmseg_head(head: dict) -> str:
    if head['type'] == 'AttentionHead':
        return _MMSEG_PRESETS.get(head['attention']['type'], head['type'])
    return head['type']


def create_model(name: str, backbone: str = 'r50', num_classes: int = 19, pretrained: bool | str = False,
                 weights: str | os.PathLike | None = None, plugin_stages: tuple[int, ...] | None = None,
                 **options: Any) -> nn.Module:
    """Build a segmentor by name.

    Args:
        name: a head (``'fcn'``, ``'ccnet'``, ``'danet'``, ``'CCHead'`` ...) or an attention module of the
            zoo (``'se'``, ``'cbam'``, ``'nonlocal'``, ``'criss_cross'`` ...); :func:`list_models` lists them.
        backbone: ``'r18'``, ``'r50'``, ``'r101'`` (mmsegmentation's dilated ResNet-D8 settings) or ``'demo'``.
        num_classes: the classes it predicts.
        pretrained: ``True``: the recipe's ImageNet weights (mmcv's ResNetV1c, ``open-mmlab://resnetN_v1c``,
            read from torch hub's cache or downloaded; offline without them it stops saying where to
            put the file: it never silently trains from scratch); a path: those ImageNet weights (mmcv,
            timm or torchvision layout); ``False``: random initialisation.
        weights: a trained checkpoint (path or URL) of this very model: ``seg``'s, or mmsegmentation's
            (converted on the fly, as ``tools/convert_checkpoint.py`` does). Read with ``weights_only``.
        plugin_stages: with an attention module ``name``: plug it into the residual blocks of these backbone
            stages (1-4) under the backbone's FCN head instead of making it the head.
        **options: the head's or the module's options (``recurrence=1``, ``reduction=8``).

    Returns:
        The ``EncoderDecoder`` in train mode, on the CPU.

    Raises:
        ValueError: an unknown name, backbone or option; ``pretrained=True`` for a backbone with no
            ImageNet weights (``'demo'``); weights that do not fit the model (the keys are named).
        RuntimeError: ImageNet or checkpoint weights that cannot be found or downloaded.
    """
    skeleton = backbone_skeleton(backbone)
    if pretrained is True:
        if not skeleton['backbone'].get('pretrained'):
            raise ValueError(f'backbone {backbone!r} has no ImageNet weights (it is trained from scratch); '
                             f'give pretrained=False, or a backbone among {", ".join(b for b in BACKBONES if b != backbone)}')
    else:
        skeleton['backbone']['pretrained'] = os.fspath(pretrained) if pretrained else None
    if weights is not None:
        skeleton['backbone']['pretrained'] = None  # the checkpoint holds the backbone too
    cfg = model_config(name, skeleton, num_classes, plugin_stages=plugin_stages, **options)
    model = build_model(Config(dict(model=cfg)), keep_pretrained=weights is None)
    if weights is not None:
        path = _weights_file(weights)
        state = load_checkpoint(path)['state_dict']
        if 'decode_head.conv_seg.weight' in state:  # mmsegmentation's layout
            from seg.models.convert import convert_mmseg_state_dict

            aux = cfg['auxiliary_head']['type'] if cfg.get('auxiliary_head') else None
            state, unknown = convert_mmseg_state_dict(state, _mmseg_head(cfg['decode_head']), aux)
            if unknown:
                raise ValueError(f'{path}: mmsegmentation keys without a counterpart in {name!r}: {unknown[:10]}')
        load_state_into(model, state, path, f'create_model({name!r}, backbone={backbone!r})')
    return model.train()
