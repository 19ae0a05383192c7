"""One interface to the attention zoo: build a module by name or config, list the names."""
from __future__ import annotations

import inspect
from typing import Any, Union

from torch import nn

from seg.registry import ATTENTION

__all__ = ['build_attention', 'list_attention']


def list_attention() -> list[str]:
    """Names of all registered attention modules, sorted (e.g. ``['cam', 'cbam', 'coord', ...]``)."""
    ATTENTION.import_from_location()
    return sorted(ATTENTION.module_dict)


def build_attention(name_or_cfg: Union[str, dict], channels: int, **kw: Any) -> nn.Module:
    """Build an attention module of the zoo.

    Args:
        name_or_cfg: a registered name (``'se'``) or a config dict with the name (or the
            registered class) under ``'type'`` and the module's options beside it
            (``dict(type='se', reduction=8)``).
        channels: the channel count C of the (B, C, H, W) feature map it will see.
        **kw: more options for the module; they override those of the config.

    Returns:
        The module, mapping (B, C, H, W) to (B, C, H, W).

    Raises:
        ValueError: an unknown name (the message lists the valid ones), a config without
            ``'type'``, a ``'channels'`` entry that contradicts ``channels``, an option the
            module does not have (the message lists those it has) or an invalid value.
    """
    if isinstance(name_or_cfg, str):
        name, options = name_or_cfg, {}
    elif isinstance(name_or_cfg, dict):
        options = dict(name_or_cfg)
        if 'type' not in options:
            raise ValueError(f"attention config {name_or_cfg!r} has no 'type' key; expected e.g. "
                             f"dict(type='se', reduction=16)")
        name = options.pop('type')
        if 'channels' in options:
            if options['channels'] != channels:
                raise ValueError(f"attention config {name_or_cfg!r} has channels="
                                 f"{options['channels']!r} but channels={channels!r} was passed")
            options.pop('channels')
    else:
        raise ValueError(f'attention must be given as a name or a config dict, got {name_or_cfg!r}')
    valid = list_attention()
    if isinstance(name, type) and name in ATTENTION.module_dict.values():
        cls = name
    elif isinstance(name, str) and name in ATTENTION.module_dict:
        cls = ATTENTION.module_dict[name]
    else:
        raise ValueError(f"unknown attention type {name!r}; valid types are: {', '.join(valid)}")
    options.update(kw)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in ('self', 'channels')]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"attention type {name!r} has no option(s) {', '.join(unknown)}; "
                         f"its options are: {', '.join(accepted) or '(none)'}")
    return cls(channels, **options)
