"""Reading what a training run logged: mmengine's ``<work_dir>/<timestamp>/vis_data/scalars.json``."""
from __future__ import annotations

import json

__all__ = ['read_scalar_entries']


def read_scalar_entries(path: str) -> list[dict]:
    """The JSON objects of one mmengine ``scalars.json`` (one per line; blank or broken lines skipped)."""
    entries = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries
