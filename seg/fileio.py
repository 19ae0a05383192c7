"""Where outputs go: output folders that are folders, and file names that stay inside them.

Beside :mod:`seg.registry`, this is the bottom layer: every layer that writes files may use it.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ['ensure_dir', 'output_path']


def ensure_dir(path: str | os.PathLike, what: str = 'output folder') -> Path:
    """Create the folder ``path`` (and its parents) unless it exists.

    Raises:
        NotADirectoryError: ``path`` (or one of its parents) is an existing file, named in the message.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f'{what} {str(path)!r} cannot be created: {str(parent)!r} is a file, '
                                     'not a folder')
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` after checking that ``name`` cannot escape ``folder``.

    Raises:
        ValueError: ``name`` is absolute, contains a ``..`` component or a NUL byte, or resolves
            (through symlinks) outside ``folder``.
    """
    if not name or '\0' in name or os.path.isabs(name) or Path(name).anchor:
        raise ValueError(f'output name {name!r} must be a relative file name inside {str(folder)!r}')
    if any(part == '..' for part in Path(name).parts):
        raise ValueError(f'output name {name!r} would escape the output folder {str(folder)!r}')
    root = Path(folder).resolve()
    target = (root / name).resolve()
    if root != target and root not in target.parents:
        raise ValueError(f'output name {name!r} resolves to {str(target)!r}, outside the output folder {str(root)!r}')
    return Path(folder) / name
