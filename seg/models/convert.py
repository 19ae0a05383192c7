"""mmsegmentation's key names -> ``seg``'s, for its models on ResNetV1c-D8 (FCN, CCNet, DANet,
Non-local, PSPNet, DeepLabV3, OCRNet, EMANet, GCNet, ISANet, DNLNet, ANN, PSANet, APCNet, DMNet), and
for mmcv's ResNetV1c ImageNet weights.

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
* PSPHead: ``psp_modules.i.1`` (after the pooling, index 0) is ``pyramid.i``.
* ASPPHead: ``image_pool.1`` is ``image_pool``, ``aspp_modules.i`` is ``aspp.i``.
* APCHead: ``acm_modules.i`` is ``contexts.i``, inside it ``pooled_redu_conv / input_redu_conv /
  residual_conv / fusion_conv / gla`` are ``pooled_reduce / input_reduce / residual / fusion / affinity``.
* DMHead: ``dcm_modules.i`` is ``dcms.i``, inside it ``filter_gen_conv / input_redu_conv / fusion_conv``
  are ``filter_gen / input_reduce / fusion``.
* OCRHead (mmsegmentation's two cascaded heads ``0`` and ``1``, one head here): the FCN stage
  ``0.convs.0 / 0.conv_seg`` is ``soft_head.convs.0 / soft_head.cls.1``; ``1.bottleneck`` is ``conv_in``;
  ``1.object_context_block.{query,key}_project.i`` is ``context.{query,key}.i``,
  ``{value,out}_project`` is ``context.{value,conv_out}``, ``bottleneck`` is ``context.bottleneck``.
* GCHead: the three convolutions as CCHead's; ``gc_block.conv_mask`` is ``context.conv_mask``,
  ``gc_block.channel_{add,mul}_conv`` is ``context.channel_{add,mul}``.
* EMAHead: ``ema_in_conv / bottleneck / conv_cat`` are ``conv_in / conv_out / bottleneck``; the EMA
  unit ``ema_module.bases`` is ``context.bases``, ``ema_mid_conv.conv.{weight,bias}`` (frozen in
  mmsegmentation) are the buffers ``context.mid_{weight,bias}``, ``ema_out_conv.conv / .bn`` is
  ``context.conv_out / context.norm``.
* ISAHead: ``in_conv / out_conv`` are ``conv_in / bottleneck``; ``{global,local}_relation`` keep
  their names inside ``context``, where ``{query,key}_project.i`` is ``{query,key}.i``,
  ``value_project`` is ``value`` and ``output_project`` is ``out``.
* DNLHead: NLHead's names (``dnl_block`` for ``nl_block``), and ``dnl_block.conv_mask`` is
  ``context.conv_mask``.
* ANNHead: the names are kept (``fusion`` is the AFNB, ``context`` the APNB, ``bottleneck`` the conv
  between them), only the ConvModules inside them, ``stages.i.{key,query}_project`` and
  ``bottleneck``, become ``X.0`` / ``X.1``; APNB's shared key / query projection is listed under both
  names in both layouts.
* PSAHead: ``reduce / attention / reduce_p / attention_p`` (the attention part) are under ``context``
  (``reduce.conv`` is ``context.reduce.0``, ``attention.0.conv`` is ``context.attention.0.0``, the
  mask conv ``attention.1`` keeps its name); ``proj`` and ``bottleneck`` become ``X.0`` / ``X.1``.
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
    'DNLHead': [*_conv_module(r'convs\.0', 'conv_in'), *_conv_module(r'convs\.1', 'conv_out'),
                *_conv_module('conv_cat', 'bottleneck'), (r'^dnl_block\.(g|theta|phi|conv_mask)\.(conv\.)?', r'context.\1.'),
                (r'^dnl_block\.conv_out\.conv\.', 'context.conv_out.'), (r'^dnl_block\.conv_out\.bn\.', 'context.norm.'),
                *_CLASSIFIER],
    'ANNHead': [*_conv_module(r'(fusion|context)\.stages\.(\d+)\.(key|query)_project', r'\1.stages.\2.\3_project'),
                (r'^(fusion|context)\.stages\.(\d+)\.(value|out)_project\.', r'\1.stages.\2.\3_project.'),
                *_conv_module(r'(fusion|context)\.bottleneck', r'\1.bottleneck'), *_conv_module('bottleneck', 'bottleneck'),
                *_CLASSIFIER],
    'PSPHead': [*_conv_module(r'psp_modules\.(\d+)\.1', r'pyramid.\1'), *_conv_module('bottleneck', 'bottleneck'),
                *_CLASSIFIER],
    'ASPPHead': [*_conv_module(r'image_pool\.1', 'image_pool'), *_conv_module(r'aspp_modules\.(\d+)', r'aspp.\1'),
                 *_conv_module('bottleneck', 'bottleneck'), *_CLASSIFIER],
    'APCHead': [*(rule for src, dst in (('pooled_redu_conv', 'pooled_reduce'), ('input_redu_conv', 'input_reduce'),
                                        ('global_info', 'global_info'), ('residual_conv', 'residual'),
                                        ('fusion_conv', 'fusion'))
                  for rule in _conv_module(rf'acm_modules\.(\d+)\.{src}', rf'contexts.\1.{dst}')),
                (r'^acm_modules\.(\d+)\.gla\.', r'contexts.\1.affinity.'), *_conv_module('bottleneck', 'bottleneck'),
                *_CLASSIFIER],
    'DMHead': [*_conv_module(r'dcm_modules\.(\d+)\.input_redu_conv', r'dcms.\1.input_reduce'),
               *_conv_module(r'dcm_modules\.(\d+)\.fusion_conv', r'dcms.\1.fusion'),
               (r'^dcm_modules\.(\d+)\.filter_gen_conv\.', r'dcms.\1.filter_gen.'),
               (r'^dcm_modules\.(\d+)\.norm\.', r'dcms.\1.norm.'), *_conv_module('bottleneck', 'bottleneck'),
               *_CLASSIFIER],
    'OCRHead': [(r'^0\.convs\.0\.conv\.', 'soft_head.convs.0.0.'), (r'^0\.convs\.0\.bn\.', 'soft_head.convs.0.1.'),
                (r'^0\.conv_seg\.', 'soft_head.cls.1.'), *_conv_module(r'1\.bottleneck', 'conv_in'),
                *_conv_module(r'1\.object_context_block\.(query|key)_project\.(\d)', r'context.\1.\2'),
                *_conv_module(r'1\.object_context_block\.value_project', 'context.value'),
                *_conv_module(r'1\.object_context_block\.out_project', 'context.conv_out'),
                *_conv_module(r'1\.object_context_block\.bottleneck', 'context.bottleneck'),
                (r'^1\.conv_seg\.', 'cls.1.')],
    'GCHead': [*_conv_module(r'convs\.0', 'conv_in'), *_conv_module(r'convs\.1', 'conv_out'),
               *_conv_module('conv_cat', 'bottleneck'), (r'^gc_block\.conv_mask\.', 'context.conv_mask.'),
               (r'^gc_block\.channel_(add|mul)_conv\.', r'context.channel_\1.'), *_CLASSIFIER],
    'EMAHead': [*_conv_module('ema_in_conv', 'conv_in'), *_conv_module('bottleneck', 'conv_out'),
                *_conv_module('conv_cat', 'bottleneck'), (r'^ema_module\.bases$', 'context.bases'),
                (r'^ema_mid_conv\.conv\.(weight|bias)$', r'context.mid_\1'),
                (r'^ema_out_conv\.conv\.', 'context.conv_out.'), (r'^ema_out_conv\.bn\.', 'context.norm.'),
                *_CLASSIFIER],
    'ISAHead': [*_conv_module('in_conv', 'conv_in'), *_conv_module('out_conv', 'bottleneck'),
                *_conv_module(r'(global|local)_relation\.(query|key)_project\.(\d)', r'context.\1_relation.\2.\3'),
                (r'^(global|local)_relation\.value_project\.', r'context.\1_relation.value.'),
                *_conv_module(r'(global|local)_relation\.output_project', r'context.\1_relation.out'),
                *_CLASSIFIER],
    'PSAHead': [*_conv_module(r'reduce(_p)?', r'context.reduce\1'),
                *_conv_module(r'attention(_p)?\.0', r'context.attention\1.0'),
                (r'^attention(_p)?\.1\.', r'context.attention\1.1.'), *_conv_module('proj', 'proj'),
                *_conv_module('bottleneck', 'bottleneck'), *_CLASSIFIER],
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
        decode_head: the mmsegmentation head type, a key of :data:`HEAD_RULES` (``'CCHead'``,
            ``'OCRHead'`` for OCRNet's cascade, whose ``decode_head.0`` / ``decode_head.1`` are its stages).
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
