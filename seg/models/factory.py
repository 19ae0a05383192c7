"""Model names and backbone presets: the config of ``NAME`` on ``BACKBONE``, one meaning everywhere.

A name is, from the registries (so a newly registered head or attention module is usable by name
with no change here):

* a module of the attention zoo (:func:`seg.models.attention.list_attention`): an ``AttentionHead``
  carrying that module (``cbam``, ``nonlocal``, ``criss_cross``), or, with ``plugin_stages``, the
  module plugged into the backbone's residual blocks under an FCN head;
* a decode head by its class name (``CCHead``), lower-cased, without ``head`` (``cc``), or by its
  method's name (``fcn``, ``ccnet``, ``danet``).

Where a head and a module share a name, the name is the head (``isa`` is mmsegmentation's ISAHead,
``ema`` its EMAHead; their modules are in those heads, and plug into a backbone by the same name with
``plugin_stages``). ``nonlocal`` is the non-local module, which in a head is exactly the Non-local head
(``NLHead`` is that preset), and the same module plugs into a backbone. Every extra output a head
declares (DAHead's ``pam`` / ``cam``, its ``outputs``) is supervised with the weight its class gives
in ``output_weights`` (OCRNet's soft regions: 0.4), else 1; the main output with 1 and the auxiliary
head with 0.4. A head that reads more than the skeleton's last feature says how in a classmethod
``skeleton_inputs(decode_head, auxiliary_head) -> options`` (ANN: stages 3 and 4; OCRNet: its FCN
stage takes the auxiliary head's input and width), and one whose own stage replaces the auxiliary head
sets ``replaces_auxiliary = True`` (OCRNet). :func:`seg.apis.create_model` builds these configs; the compare tool
names its models with them.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

__all__ = ['BACKBONES', 'METHOD_ALIASES', 'available_models', 'backbone_skeleton', 'head_config', 'model_config',
           'resolve_name', 'set_num_classes', 'supervised_outputs', 'without_pretrained']

METHOD_ALIASES = {'fcn': 'FCNHead', 'ccnet': 'CCHead', 'danet': 'DAHead', 'pspnet': 'PSPHead', 'deeplabv3': 'ASPPHead',
                  'ocrnet': 'OCRHead', 'emanet': 'EMAHead', 'gcnet': 'GCHead', 'isanet': 'ISAHead', 'dnlnet': 'DNLHead',
                  'psanet': 'PSAHead', 'apcnet': 'APCHead', 'dmnet': 'DMHead'}
"""Method names beside the automatic aliases (a head missing from the registry is left out)."""

_MEAN_STD = dict(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


def _skeleton(depth: int, channels: tuple[int, ...] | None, head: tuple[int, int], aux: tuple[int, int],
              norm: str, pretrained: str | None, aux_convs: int = 1) -> dict:
    backbone = dict(type='DilatedResNet', depth=depth, deep_stem=True, output_stride=8, norm=norm,
                    pretrained=pretrained)
    if channels is not None:
        backbone['channels'] = channels
    return dict(
        type='EncoderDecoder', num_classes=19,
        data_preprocessor=dict(type='SegDataPreprocessor', **_MEAN_STD, pad_val=0),
        backbone=backbone,
        decode_head=dict(type='FCNHead', in_channels=head[0], channels=head[1], num_classes=19, num_convs=2,
                         concat_input=True, in_index=3, dropout=0.1, norm=norm),
        auxiliary_head=dict(type='FCNHead', in_channels=aux[0], channels=aux[1], num_classes=19,
                            num_convs=aux_convs, concat_input=False, in_index=2, dropout=0.1, norm=norm),
        loss_weights=dict(out=1.0, aux=0.4), align_corners=False, test_cfg=dict(mode='whole'))


def _demo() -> dict:
    """The network of ``configs/demo_ccnet.py`` with an FCN head: dilated ResNet-18 of widths
    (16, 32, 64, 128), head width 32, trained from scratch (no ImageNet weights exist at these widths)."""
    model = _skeleton(18, (16, 32, 64, 128), (128, 32), (64, 32), 'BN', None)
    model['data_preprocessor'] = dict(type='SegDataPreprocessor')
    model['num_classes'] = model['auxiliary_head']['num_classes'] = 9  # the synthetic scenes' classes
    model['decode_head'] = dict(type='FCNHead', in_channels=128, channels=32, num_classes=9, num_convs=1,
                                concat_input=False, in_index=3, dropout=0.1, norm='BN')
    del model['align_corners']
    return model


BACKBONES: dict[str, dict] = {
    'demo': _demo(),
    # mmsegmentation's R-18-D8 / R-50-D8 / R-101-D8 settings, from mmcv's ImageNet ResNetV1c weights.
    'r18': _skeleton(18, None, (512, 128), (256, 64), 'SyncBN', 'open-mmlab://resnet18_v1c'),
    'r50': _skeleton(50, None, (2048, 512), (1024, 256), 'SyncBN', 'open-mmlab://resnet50_v1c'),
    'r101': _skeleton(101, None, (2048, 512), (1024, 256), 'SyncBN', 'open-mmlab://resnet101_v1c'),
}
"""Backbone presets: an ``EncoderDecoder`` with an FCN head whose width, input, dropout and norm every
named head takes; ``backbone.pretrained`` holds the recipe's ImageNet weights (None: none exist)."""


def backbone_skeleton(backbone: str) -> dict:
    """A copy of the preset ``backbone``.

    Raises:
        ValueError: an unknown preset (the valid ones are listed).
    """
    if backbone not in BACKBONES:
        raise ValueError(f'unknown backbone {backbone!r}; valid backbones are: {", ".join(BACKBONES)}')
    return copy.deepcopy(BACKBONES[backbone])


def available_models() -> dict[str, tuple[str, str]]:
    """Every model name: ``{name: (kind, target)}`` with kind ``'head'`` or ``'attention'``, from the registries."""
    import seg.models.heads as heads
    from seg.models.attention import list_attention
    from seg.registry import MODELS

    names: dict[str, tuple[str, str]] = {}
    registered = [c for c in heads.__all__ if c in MODELS.module_dict]
    for cls_name in registered:
        low = cls_name.lower()
        for alias in (cls_name, low, low[:-4] if low.endswith('head') else low):
            names[alias] = ('head', cls_name)
    for attn in list_attention():
        names.setdefault(attn, ('attention', attn))  # a head of the same name wins the clash
    for alias, cls_name in METHOD_ALIASES.items():
        if cls_name in registered:
            names[alias] = ('head', cls_name)
    return names


def resolve_name(name: str) -> tuple[str, str]:
    """``(kind, target)`` of a model name (case-insensitive where unambiguous).

    Raises:
        ValueError: an unknown name, listing the valid ones.
    """
    names = available_models()
    key = name.strip()
    if key not in names and key.lower() in names:
        key = key.lower()
    if key not in names:
        raise ValueError(f'unknown model {name!r}; valid names are: {", ".join(sorted(names))}')
    return names[key]


def head_config(kind: str, target: str, options: dict, generic: dict, label: str = '') -> dict:
    """The decode-head dict of a head (``kind='head'``) or attention module (``'attention'``) with
    ``options``, on a skeleton's ``generic`` head settings (in/out channels, classes, input, dropout, norm).

    Raises:
        ValueError: an option the head does not have, or one of the settings the skeleton fixes.
    """
    from seg.registry import MODELS

    if kind == 'attention':
        return dict(type='AttentionHead', **generic, attention=dict(type=target, **options))
    params = inspect.signature(MODELS.get(target)).parameters
    accepted = [p for p in params if p != 'self']
    fixed = {'in_channels', 'channels', 'num_classes'}
    bad = sorted(set(options) - set(accepted)) or sorted(fixed & set(options))
    if bad:
        raise ValueError(f'{label or target!r}: {target} has no option(s) {", ".join(bad)} settable here; '
                         f'its options are: {", ".join(p for p in accepted if p not in generic)}')
    head = dict(type=target, **{k: v for k, v in generic.items() if k in params})
    head.update(options)
    return head


def without_pretrained(model: dict) -> dict:
    """A copy of a segmentor config whose backbone reads no ImageNet weights file: for a model whose
    weights come from a checkpoint (evaluation, inference) or do not matter (profiling)."""
    model = copy.deepcopy(dict(model))
    if isinstance(model.get('backbone'), dict):
        model['backbone'] = dict(model['backbone'], pretrained=None)
    return model


def supervised_outputs(head: dict) -> dict[str, float]:
    """The output keys a head config's module returns in training (its class's ``outputs``), each with
    its loss weight (the class's ``output_weights``, else 1)."""
    from seg.registry import MODELS

    cls = MODELS.get(head['type'])
    weights = getattr(cls, 'output_weights', {})
    return {key: float(weights.get(key, 1.0)) for key in getattr(cls, 'outputs', ('out',))}


def set_num_classes(model: dict, num_classes: int) -> dict:
    """Set the class count of a segmentor config and of its heads (in place)."""
    model['num_classes'] = num_classes
    for head in ('decode_head', 'auxiliary_head'):
        if isinstance(model.get(head), dict):
            model[head]['num_classes'] = num_classes
    return model


def model_config(name: str, skeleton: dict | str = 'r50', num_classes: int | None = None,
                 plugin_stages: tuple[int, ...] | None = None, label: str = '', **options: Any) -> dict:
    """The full ``EncoderDecoder`` config of model ``name`` on a skeleton.

    Args:
        name: a model name (see the module docstring).
        skeleton: a preset name of :data:`BACKBONES`, or an ``EncoderDecoder`` config dict whose backbone,
            auxiliary head, losses and head settings (width, input index, dropout, norm) are kept.
        num_classes: the class count (default: the skeleton's).
        plugin_stages: put the attention module ``name`` into the residual blocks of these backbone
            stages (1-4) instead of a head; the decode head stays the skeleton's.
        label: how errors name the model (default ``name``).
        **options: the head's or the module's options (``recurrence=1``, ``reduction=8``).

    Returns:
        A new dict; ``backbone.pretrained`` is the skeleton's.

    Raises:
        ValueError: an unknown name or backbone, an option the head does not have, or ``plugin_stages``
            with a name that is not an attention module.
    """
    import seg.models  # noqa: F401  (registration)

    model = backbone_skeleton(skeleton) if isinstance(skeleton, str) else copy.deepcopy(skeleton)
    kind, target = resolve_name(name)
    if plugin_stages is not None:
        from seg.models.attention import list_attention

        if name.strip().lower() in list_attention():  # a module also named as a head plugs in as the module
            kind, target = 'attention', name.strip().lower()
        if kind != 'attention':
            raise ValueError(f'{name!r} is a head, not an attention module: only modules plug into a backbone '
                             f'(plugin_stages={plugin_stages!r})')
        model['backbone'].update(block_attention=dict(type=target, **options),
                                 attention_stages=tuple(plugin_stages))
    else:
        dh = model['decode_head']
        generic = dict(in_channels=dh['in_channels'], channels=dh['channels'], num_classes=model['num_classes'],
                       in_index=dh.get('in_index', -1), dropout=dh.get('dropout', 0.1), norm=dh.get('norm', 'BN'))
        aux = model.get('auxiliary_head')
        if kind == 'head':
            from seg.registry import MODELS

            cls = MODELS.get(target)
            hook = getattr(cls, 'skeleton_inputs', None)
            if hook is not None:
                generic.update(hook(dh, aux))
            if getattr(cls, 'replaces_auxiliary', False):
                model['auxiliary_head'] = None
        model['decode_head'] = head_config(kind, target, options, generic, label or name)
    weights = {'out': 1.0}
    if model.get('auxiliary_head'):
        weights['aux'] = 0.4
    for key, weight in supervised_outputs(model['decode_head']).items():
        weights.setdefault(key, weight)
    model['loss_weights'] = weights
    if num_classes is not None:
        set_num_classes(model, num_classes)
    return model
