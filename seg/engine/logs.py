"""Reading what a training run logged: mmengine's ``<work_dir>/<timestamp>/vis_data/scalars.json``.

The one reader of these logs in ``seg`` (the training curves of :mod:`seg.visualization.plots` and
the accuracy of :mod:`seg.analysis.results` both use :func:`read_scalars`), with one rule:

* files: ``work_dir`` itself when it is a file, else every ``<work_dir>/<timestamp>/vis_data/scalars.json``,
  oldest first (mmengine's ``YYYYMMDD_HHMMSS`` timestamps sort in time order);
* lines: one JSON object each; blank lines, lines that do not parse and values that are not objects
  are skipped;
* an entry's step is its ``step`` (what mmengine writes), else its ``iter``, else 0;
* an entry with ``mIoU`` or ``aAcc`` is a validation, else one with ``lr`` or a ``loss*`` key a training
  entry; any other entry is left out;
* a later entry of the same kind and step (a later line, or a later run that resumed and repeated the
  step) replaces an earlier one.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
from typing import NamedTuple

__all__ = ['ScalarEntry', 'read_scalar_entries', 'read_scalars', 'scalar_files']


class ScalarEntry(NamedTuple):
    """One logged entry: its step, its values (the JSON object as written) and the file it is from."""

    step: int
    values: dict
    path: str


def read_scalar_entries(path: str) -> list[dict]:
    """The JSON objects of one mmengine ``scalars.json`` (one per line; blank or broken lines and values
    that are not objects skipped)."""
    entries = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def scalar_files(work_dir: str | os.PathLike) -> list[str]:
    """A run's ``scalars.json`` files, oldest first (``work_dir`` itself when it is a file)."""
    work_dir = os.fspath(work_dir)
    if osp.isfile(work_dir):
        return [work_dir]
    return sorted(glob.glob(osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')))


def _kind(entry: dict) -> str | None:
    if 'mIoU' in entry or 'aAcc' in entry:
        return 'val'
    if 'lr' in entry or any(isinstance(k, str) and k.startswith('loss') for k in entry):
        return 'train'
    return None


def read_scalars(work_dir: str | os.PathLike) -> tuple[list[ScalarEntry], list[ScalarEntry]]:
    """Training and validation entries of a run's mmengine logs (the rule is in the module docstring).

    Returns:
        ``(train, val)``: lists of :class:`ScalarEntry` sorted by step, one per step.

    Raises:
        FileNotFoundError: if no scalars file is found.
    """
    files = scalar_files(work_dir)
    if not files:
        raise FileNotFoundError(f'no mmengine scalars.json under {os.fspath(work_dir)!r} '
                                '(expected WORK_DIR/<timestamp>/vis_data/scalars.json)')
    found: dict[str, dict[int, ScalarEntry]] = {'train': {}, 'val': {}}
    for path in files:
        for entry in read_scalar_entries(path):
            kind = _kind(entry)
            if kind is not None:
                step = int(entry.get('step', entry.get('iter', 0)))
                found[kind][step] = ScalarEntry(step, entry, path)
    train, val = ([by_step[s] for s in sorted(by_step)] for by_step in (found['train'], found['val']))
    return train, val
