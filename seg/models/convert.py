"""mmsegmentation's key names -> ``seg``'s, for its FCN, CCNet, DANet and NonLocal models on
ResNetV1c-D8, and for mmcv's ResNetV1c ImageNet weights.

The models compute the same functions with the same parameters (``seg``'s and mmsegmentation
1.2.2's R-50-D8 models have equal parameter counts for the backbone and both heads); only names
differ:

* ResNetV1c: mmcv's deep stem ``stem.{0,1,3,4,6,7}`` (conv, BN, conv, BN, conv, BN) is timm's
  ``conv1.{0,1,3,4,6}`` + ``bn1``, here ``stem.0.{0,1,3,4,6}`` + ``stem.1``; the residual stages
  have the same names (``layerN.M.conv1 / bn1 / ... / downsample.0 / downsample.1``). mmcv's
  ``contract_dilation`` (the first block of a dilated stage uses half the dilation) is what timm's
  ``output_stride=8`` builds.
* mmcv's ``ConvModule`` is ``X.conv`` + ``X.bn``; ``seg``'s ``ConvBNReLU`` is ``X.0`` + ``X.1``.
* the classifier ``conv_seg`` is ``cls.1`` (``cls.0`` is the dropout).
* CCHead: ``convs.0 / convs.1 / conv_cat`` are ``conv_in / conv_out / bottleneck``; the criss-cross
  module ``cca.{query,key,value}_conv`` is ``context.{query,key,value}``.
* NLHead: the same three convolutions; ``nl_block.{g,theta,phi}.conv`` is ``context.{g,theta,phi}``,
  ``nl_block.conv_out.conv / .bn`` is ``context.conv_out / context.norm``.
* DAHead: ``{pam,cam}_{in,out}_conv`` are ``{pam,cam}_{in,out}``, ``pam.{query,key,value}_project``
  is ``pam.{query,key,value}``, ``{pam,cam}_conv_seg`` is ``{pam,cam}_cls.1``.
* the attention gammas, mmcv's ``Scale`` (``*.gamma.scale``, a 0-d tensor), are ``*.gamma`` of shape (1,).
"""
from __future__ import annotations

import re

from torch import Tensor

__all__ = ['HEAD_RULES', 'MMCV_STEM_RULES', 'convert_mmseg_state_dict', 'is_mmcv_resnet_layout', 'mmcv_backbone']

MMCV_STEM_RULES = [(r'^stem\.(0|1|3|4|6)\.', r'stem.0.\1.'), (r'^stem\.7\.', r'stem.1.')]
"""mmcv's ResNetV1c stem -> :class:`seg.models.backbones.DilatedResNet`'s (the stages keep their names)."""


def _conv_module(src: str, dst: str) -> list[tuple[str, str]]:
    return [(rf'^{src}\.conv\.', f'{dst}.0.'), (rf'^{src}\.bn\.', f'{dst}.1.')]


_CLASSIFIER = [(r'^conv_seg\.', 'cls.1.')]

HEAD_RULES: dict[str, list[tuple[str, str]]] = {
    'FCNHead': [(r'^convs\.(\d+)\.conv\.', r'convs.\1.0.'), (r'^convs\.(\d+)\.bn\.', r'convs.\1.1.'),
                *_conv_module('conv_cat', 'conv_cat'), *_CLASSIFIER],
    'CCHead': [*_conv_module(r'convs\.0', 'conv_in'), *_conv_module(r'convs\.1', 'conv_out'),
               *_conv_module('conv_cat', 'bottleneck'), (r'^cca\.(query|key|value)_conv\.', r'context.\1.'),
               (r'^cca\.gamma\.scale$', 'context.gamma'), *_CLASSIFIER],
    'NLHead': [*_conv_module(r'convs\.0', 'conv_in'), *_conv_module(r'convs\.1', 'conv_out'),
               *_conv_module('conv_cat', 'bottleneck'), (r'^nl_block\.(g|theta|phi)\.conv\.', r'context.\1.'),
               (r'^nl_block\.conv_out\.conv\.', 'context.conv_out.'), (r'^nl_block\.conv_out\.bn\.', 'context.norm.'),
               *_CLASSIFIER],
    'DAHead': [*_conv_module('pam_in_conv', 'pam_in'), *_conv_module('pam_out_conv', 'pam_out'),
               *_conv_module('cam_in_conv', 'cam_in'), *_conv_module('cam_out_conv', 'cam_out'),
               (r'^pam\.(query|key|value)_project\.', r'pam.\1.'), (r'^(pam|cam)\.gamma\.scale$', r'\1.gamma'),
               (r'^pam_conv_seg\.', 'pam_cls.1.'), (r'^cam_conv_seg\.', 'cam_cls.1.'), *_CLASSIFIER],
}
"""Per mmsegmentation head type, its keys (without the ``decode_head.`` prefix) -> ``seg``'s."""


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return None


def _value(new_key: str, value: Tensor) -> Tensor:
    # mmcv's Scale holds a 0-d tensor; seg's gammas are (1,).
    return value.reshape(1) if new_key.endswith('gamma') and value.dim() == 0 else value


def is_mmcv_resnet_layout(state: dict[str, Tensor]) -> bool:
    """Whether a backbone state dict has mmcv's ResNetV1c deep-stem names (``stem.7.*``)."""
    return any(k.startswith('stem.7.') for k in state)


def mmcv_backbone(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """mmcv's ResNetV1c state dict (e.g. ``open-mmlab://resnet50_v1c``) with ``seg``'s stem names."""
    out = {}
    for key, value in state.items():
        out[_rename(key, MMCV_STEM_RULES) or key] = value
    return out


def convert_mmseg_state_dict(state: dict[str, Tensor], decode_head: str,
                             auxiliary_head: str | None = 'FCNHead') -> tuple[dict[str, Tensor], list[str]]:
    """Rename an mmsegmentation ``EncoderDecoder`` state dict to ``seg``'s.

    Args:
        state: mmsegmentation's ``state_dict`` (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``).
        decode_head: the mmsegmentation head type: ``'FCNHead'``, ``'CCHead'``, ``'NLHead'`` or ``'DAHead'``.
        auxiliary_head: the auxiliary head type (``'FCNHead'``), or None.

    Returns:
        ``(renamed state dict, keys no rule knows)``.

    Raises:
        ValueError: an unsupported head type.
    """
    if decode_head not in HEAD_RULES or (auxiliary_head is not None and auxiliary_head not in HEAD_RULES):
        raise ValueError(f'mmsegmentation heads {decode_head!r} / {auxiliary_head!r}: only '
                         f'{", ".join(HEAD_RULES)} convert')
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        module, _, rest = key.partition('.')
        if module == 'backbone':
            new = _rename(rest, MMCV_STEM_RULES) or (rest if rest.startswith('layer') else None)
        elif module == 'decode_head':
            new = _rename(rest, HEAD_RULES[decode_head])
        elif module == 'auxiliary_head' and auxiliary_head is not None:
            new = _rename(rest, HEAD_RULES[auxiliary_head])
        else:
            new = None
        if new is None:
            unknown.append(key)
            continue
        new_key = f'{module}.{new}'
        out[new_key] = _value(new_key, value)
    return out, unknown
