"""One-time renames of state-dict keys, so checkpoints written by older ``seg`` versions still load.

:func:`load_checkpoint` applies :data:`RENAMES` to every checkpoint it reads. Each entry is a
regular expression over a full key and its replacement, applied in order, each to the result of the
ones before (a key can carry several old names); a key that matches no entry is kept.
"""
from __future__ import annotations

import re

from torch import Tensor

__all__ = ['RENAMES', 'migrate_state_dict']

RENAMES: list[tuple[str, str]] = [
    # Until 0.1.0 the recurrent criss-cross module wrapped one pass in a ``cca`` submodule; the
    # module now holds its query / key / value / gamma itself.
    (r'(^|\.)cca\.((?:query|key|value)\.(?:weight|bias)|gamma)$', r'\1\2'),
    # In 0.1.0 the backbone's attention plug-in sat in timm's ``se`` slot of every residual block
    # whatever the module (``backbone.layer4.0.se.query.weight``); it is now the block's ``attn``.
    # Only seg's whole-model keys: ImageNet weights (timm, torchvision) never carry a plug-in and
    # mmseg's checkpoints have no ``backbone.layerN.M.se.``.
    (r'^(backbone\.layer\d+\.\d+\.)se\.', r'\1attn.'),
]
"""``(pattern, replacement)`` pairs, applied in order with :func:`re.sub`."""


def migrate_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with old key names replaced by the current ones (order kept)."""
    if not RENAMES:
        return state
    out = {}
    for key, value in state.items():
        for pattern, replacement in RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out
