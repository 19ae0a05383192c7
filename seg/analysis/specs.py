"""Naming the models of a comparison: ``NAME[:key=value,...]`` or a config path.

A name means what it means to :func:`seg.create_model` (:mod:`seg.models.factory`: a module of the
attention zoo, or a decode head by class, short or method name); the options after the colon are
the head's or the module's (``cbam:reduction=8,spatial_kernel=3``, ``ccnet:recurrence=1``).
"""
from __future__ import annotations

import ast
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any

from seg.models.factory import (
    BACKBONES,
    METHOD_ALIASES,
    available_models,
    model_config,
    resolve_name,
    set_num_classes,
    without_pretrained,
)

__all__ = ['BACKBONES', 'METHOD_ALIASES', 'ModelSpec', 'available_models', 'parse_size', 'parse_spec',
           'safe_label', 'set_num_classes', 'spec_model']


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
    try:
        kind, target = resolve_name(name)
    except ValueError as exc:
        raise ValueError(f'{exc} (in {text!r}; or give a config path)') from exc
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


def spec_model(spec: ModelSpec, skeleton: dict, backbone: str = 'skeleton', num_classes: int | None = None) -> dict:
    """The full ``EncoderDecoder`` config of a head / attention spec on a skeleton model (whose backbone's
    ``pretrained`` weights it keeps).

    Args:
        spec: from :func:`parse_spec` (not a config spec: its model is its own).
        skeleton: an ``EncoderDecoder`` config dict whose backbone, auxiliary head, loss and head
            settings (width, input index, dropout, norm) the spec's head is built on.
        backbone: the skeleton's name, for error messages.
        num_classes: override of the class count (default: the skeleton's).

    Raises:
        ValueError: an option the head does not have, or one the module rejects at this width.
    """
    if spec.kind == 'config':
        raise ValueError(f'{spec.label!r} is a config: its model is its own')
    dh = skeleton['decode_head']
    try:
        model = model_config(spec.name, skeleton, num_classes, label=spec.label, **spec.options)
        # the module is built once here so that an option it rejects at this width fails now
        _check_builds(model)
    except ValueError as exc:
        if str(exc).startswith(repr(spec.label)):
            raise
        raise ValueError(f'{spec.label!r} cannot be built on the {backbone!r} backbone (head width '
                         f'{dh["channels"]}): {exc}') from exc
    return model


def _check_builds(model: dict) -> None:
    from seg.registry import MODELS

    MODELS.build(without_pretrained(model))
