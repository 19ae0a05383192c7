"""One-time renames of state-dict keys, so checkpoints written by older ``seg`` versions still load.

:func:`load_checkpoint` applies :data:`RENAMES` to every checkpoint it reads. Each entry is a
regular expression over a full key and its replacement; a key that matches no entry is kept.
"""
from __future__ import annotations

import re

from torch import Tensor

__all__ = ['RENAMES', 'migrate_state_dict']

RENAMES: list[tuple[str, str]] = [
    # Until 0.1.0 the recurrent criss-cross module wrapped one pass in a ``cca`` submodule; the
    # module now holds its query / key / value / gamma itself.
    (r'(^|\.)cca\.((?:query|key|value)\.(?:weight|bias)|gamma)$', r'\1\2'),
]
"""``(pattern, replacement)`` pairs, applied in order with :func:`re.sub` (first match wins)."""


def migrate_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with old key names replaced by the current ones (order kept)."""
    if not RENAMES:
        return state
    out = {}
    for key, value in state.items():
        for pattern, replacement in RENAMES:
            new, count = re.subn(pattern, replacement, key)
            if count:
                key = new
                break
        out[key] = value
    return out
