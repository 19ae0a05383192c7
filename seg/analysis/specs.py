"""Naming the models of a comparison: ``NAME[:key=value,...]`` or a config path, and the model config
each name stands for on a backbone preset.

No paper. A name is, from the registries (so a newly registered head or module is usable by name
with no change here):

* a module of the attention zoo (:func:`seg.models.attention.list_attention`): an
  ``AttentionHead`` with that module (``cbam:reduction=8,spatial_kernel=3``, ``nonlocal``,
  ``criss_cross:recurrence=1``);
* a decode head of :data:`seg.models.heads.__all__` by its class name (``CCHead``), lower-cased, or
  without ``head`` (``cc``), or by its method's name (``fcn``, ``ccnet``, ``danet``): the head on
  the backbone with its own defaults and the options given (``ccnet:recurrence=1``).

One name means one thing everywhere: ``nonlocal`` is the non-local module, which in a head is
exactly the Non-local head (``NLHead`` is that preset), and the same module plugs into a backbone.
Every extra output a head returns in training (DANet's ``pam`` / ``cam``) is supervised with
weight 1, the main output with 1 and the auxiliary head with 0.4.
"""
from __future__ import annotations

import ast
import copy
import inspect
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ['BACKBONES', 'METHOD_ALIASES', 'ModelSpec', 'available_models', 'parse_size', 'parse_spec',
           'safe_label', 'set_num_classes', 'spec_model']

METHOD_ALIASES = {'fcn': 'FCNHead', 'ccnet': 'CCHead', 'danet': 'DAHead'}
"""Method names beside the automatic aliases (a head missing from the registry is left out)."""

BACKBONES: dict[str, tuple[str, dict]] = {
    # The CPU demo's network: dilated ResNet-18 of widths (16, 32, 64, 128), head width 32.
    'demo': ('demo_ccnet.py', {}),
    # mmsegmentation's R-50-D8 setting: head 2048 -> 512, auxiliary 1024 -> 256.
    'r50': ('_base_/models/fcn_r50-d8.py', {}),
    # mmsegmentation's R-18-D8 setting: head 512 -> 128, auxiliary 256 -> 64.
    'r18': ('_base_/models/fcn_r50-d8.py', {'backbone.depth': 18, 'decode_head.in_channels': 512,
                                            'decode_head.channels': 128, 'auxiliary_head.in_channels': 256,
                                            'auxiliary_head.channels': 64}),
}
"""Backbone presets: (config, relative to the ``configs/`` folder, whose model is the skeleton; overrides)."""


@dataclass
class ModelSpec:
    """One model of a comparison.

    Attributes:
        label: how the table names it (the text given, or the config's file stem).
        kind: ``'head'``, ``'attention'`` or ``'config'``.
        name: head name, attention module name, or config path.
        options: head or attention options from the spec.
    """

    label: str
    kind: str
    name: str
    options: dict = field(default_factory=dict)


def available_models() -> dict[str, tuple[str, str]]:
    """Every name a spec may use: ``{name: (kind, target)}``, from the registries."""
    import seg.models.heads as heads
    from seg.models.attention import list_attention
    from seg.registry import MODELS

    names: dict[str, tuple[str, str]] = {}
    registered = [c for c in heads.__all__ if c in MODELS.module_dict]
    for cls_name in registered:
        low = cls_name.lower()
        for alias in (cls_name, low, low[:-4] if low.endswith('head') else low):
            names[alias] = ('head', cls_name)
    for alias, cls_name in METHOD_ALIASES.items():
        if cls_name in registered:
            names[alias] = ('head', cls_name)
    for attn in list_attention():  # the modules' own names come last: they win any clash
        names[attn] = ('attention', attn)
    return names


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_spec(text: str) -> ModelSpec:
    """Parse ``NAME[:key=value,...]`` or a config path into a :class:`ModelSpec`.

    Values are Python literals (``recurrence=1``, ``kernel_size=(3, 3)``), else strings.

    Raises:
        ValueError: an unknown name (the valid names are listed) or an option without ``=``.
        FileNotFoundError: a ``.py`` path that does not exist.
    """
    text = text.strip()
    if text.endswith('.py') or osp.isfile(text):
        if not osp.isfile(text):
            raise FileNotFoundError(f'config file {text!r} does not exist')
        return ModelSpec(label=osp.splitext(osp.basename(text))[0], kind='config', name=text)
    name, _, opts = text.partition(':')
    names = available_models()
    key = name.strip()
    if key not in names and key.lower() in names:
        key = key.lower()
    if key not in names:
        raise ValueError(f'unknown model {name!r} in {text!r}; valid names are: {", ".join(sorted(names))} '
                         '(or give a config path)')
    kind, target = names[key]
    options: dict[str, Any] = {}
    if opts.strip():
        # Split on commas that start a new "key=" (so tuple values keep their commas).
        for item in re.split(r',(?=\s*[A-Za-z_]\w*\s*=)', opts):
            k, eq, v = item.partition('=')
            if not eq or not k.strip().isidentifier():
                raise ValueError(f'option {item!r} of {text!r} must look like key=value')
            options[k.strip()] = _parse_value(v.strip())
    return ModelSpec(label=text, kind=kind, name=target, options=options)


def parse_size(text: str) -> tuple[int, int]:
    """``'512x1024'`` -> ``(512, 1024)`` (height x width).

    Raises:
        ValueError: if the text is not two positive integers joined by ``x``.
    """
    m = re.fullmatch(r'\s*(\d+)\s*[xX*,]\s*(\d+)\s*', str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f'size must be HEIGHTxWIDTH with positive integers (e.g. 512x1024), got {text!r}')
    return int(m.group(1)), int(m.group(2))


def safe_label(label: str) -> str:
    """A file-name-safe form of a label (``ccnet:recurrence=1`` -> ``ccnet_recurrence-1``)."""
    return re.sub(r'[^A-Za-z0-9_-]+', '_', label.replace('=', '-')).strip('_') or 'model'


def _head_config(spec: ModelSpec, generic: dict) -> dict:
    """The decode-head dict of a head / attention spec on a skeleton's generic head settings."""
    from seg.registry import MODELS

    if spec.kind == 'attention':
        return dict(type='AttentionHead', **generic, attention=dict(type=spec.name, **spec.options))
    params = inspect.signature(MODELS.get(spec.name)).parameters
    accepted = [p for p in params if p != 'self']
    fixed = {'in_channels', 'channels', 'num_classes'}
    bad = sorted(set(spec.options) - set(accepted)) or sorted(fixed & set(spec.options))
    if bad:
        raise ValueError(f'{spec.label!r}: {spec.name} has no option(s) {", ".join(bad)} settable here; '
                         f'its options are: {", ".join(p for p in accepted if p not in generic)}')
    head = dict(type=spec.name, **{k: v for k, v in generic.items() if k in params})
    head.update(spec.options)
    return head


def _supervised_outputs(model_cfg: dict) -> list[str]:
    """Output keys the model's heads return in training (probed on a small input)."""
    import torch

    from seg.registry import MODELS

    probe = copy.deepcopy(model_cfg)
    if isinstance(probe.get('backbone'), dict):
        probe['backbone']['pretrained'] = None
    model = MODELS.build(probe).train()
    with torch.no_grad():
        return list(model.forward_logits(torch.zeros(2, 3, 64, 64)))


def spec_model(spec: ModelSpec, skeleton: dict, backbone: str = 'skeleton', num_classes: int | None = None) -> dict:
    """The full ``EncoderDecoder`` config of a head / attention spec on a skeleton model.

    Args:
        spec: from :func:`parse_spec` (not a config spec: its model is its own).
        skeleton: an ``EncoderDecoder`` config dict whose backbone, auxiliary head, loss and head
            settings (width, input index, dropout, norm) the spec's head is built on.
        backbone: the skeleton's name, for error messages.
        num_classes: override of the class count (default: the skeleton's).

    Raises:
        ValueError: an option the head does not have, or one the module rejects at this width.
    """
    import seg.models  # noqa: F401  (registration)

    if spec.kind == 'config':
        raise ValueError(f'{spec.label!r} is a config: its model is its own')
    model = copy.deepcopy(skeleton)
    if isinstance(model.get('backbone'), dict):
        model['backbone']['pretrained'] = None
    dh = model['decode_head']
    generic = dict(in_channels=dh['in_channels'], channels=dh['channels'], num_classes=model['num_classes'],
                   in_index=dh.get('in_index', -1), dropout=dh.get('dropout', 0.1), norm=dh.get('norm', 'BN'))
    model['decode_head'] = _head_config(spec, generic)
    weights = {'out': 1.0, 'aux': 0.4}
    model['loss_weights'] = weights
    try:
        outputs = _supervised_outputs(model)
    except ValueError as exc:
        raise ValueError(f'{spec.label!r} cannot be built on the {backbone!r} backbone (head width '
                         f'{generic["channels"]}): {exc}') from exc
    for key in outputs:
        weights.setdefault(key, 1.0)
    if num_classes is not None:
        set_num_classes(model, num_classes)
    return model


def set_num_classes(model: dict, num_classes: int) -> dict:
    """Set the class count of a segmentor config and of its heads (in place)."""
    model['num_classes'] = num_classes
    for head in ('decode_head', 'auxiliary_head'):
        if isinstance(model.get(head), dict):
            model[head]['num_classes'] = num_classes
    return model
