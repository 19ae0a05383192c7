"""Reading weight files: the one place where ``seg`` opens a ``.pth`` / ``.safetensors`` file.

Every file is read with ``torch.load(weights_only=True)`` (PyTorch's safe unpickler: tensors and
plain containers only, no code) or with safetensors. Checkpoints (``seg.engine.checkpoint``) and
ImageNet weights (the backbones) both come through :func:`read_weights_file`.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ['OPEN_MMLAB', 'open_mmlab_file', 'read_weights_file', 'state_dict_of']

OPEN_MMLAB = {
    'resnet18_v1c': 'https://download.openmmlab.com/pretrain/third_party/resnet18_v1c-b5776b93.pth',
    'resnet50_v1c': 'https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth',
    'resnet101_v1c': 'https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth',
}
"""``open-mmlab://NAME`` -> the URL of mmcv's ImageNet weights (the ResNetV1c the published recipes start from)."""


def read_weights_file(path: str | os.PathLike, what: str = 'weights file') -> Any:
    """The object stored in ``path``, read without executing anything.

    Args:
        path: a ``.pth`` / ``.pt`` / ``.bin`` file written by ``torch.save``, or a ``.safetensors`` file.
        what: how the error messages name the file ('checkpoint', 'pretrained weights file' ...).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is truncated, not a PyTorch / safetensors file, or holds objects the
            safe unpickler refuses (the message says which).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{what} {str(path)!r} does not exist')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - name the file and the reason
            raise ValueError(f'cannot read {what} {str(path)!r} as safetensors: {exc}') from exc
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f'{what} {str(path)!r} holds objects that torch.load(weights_only=True) refuses to '
                         f'build, so it is not read (nothing in it is executed): {exc}') from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, ...
        raise ValueError(f'cannot read {what} {str(path)!r}: it is truncated or not a file written by '
                         f'torch.save ({type(exc).__name__}: {exc})') from exc


def state_dict_of(obj: Any, source: str) -> dict[str, Tensor]:
    """The state dict inside a loaded weights file (``state_dict`` / ``model`` / ``module`` nesting undone).

    Raises:
        ValueError: ``obj`` holds no dict of tensors.
    """
    for key in ('state_dict', 'model', 'module'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f'{source!r} holds a {type(obj).__name__}, expected a state dict of tensors')
    return obj


def open_mmlab_file(uri: str, timeout: float = 20.0) -> Path:
    """The local file of ``open-mmlab://NAME``: in torch's hub cache, downloaded there when missing.

    The file lands in ``<torch.hub.get_dir()>/checkpoints/`` under the name in its URL (whose suffix
    is a prefix of its SHA-256, checked on download), where mmcv / mmengine put it too, so a copy made
    on a machine with network can be placed there by hand.

    Raises:
        ValueError: an unknown name (the known ones are listed).
        RuntimeError: it is not cached and cannot be downloaded (the URL and the cache path are named).
    """
    import socket

    name = uri[len('open-mmlab://'):] if uri.startswith('open-mmlab://') else uri
    if name not in OPEN_MMLAB:
        raise ValueError(f'unknown weights {uri!r}; known: {", ".join("open-mmlab://" + n for n in OPEN_MMLAB)}')
    url = OPEN_MMLAB[name]
    cache = Path(torch.hub.get_dir()) / 'checkpoints' / url.rsplit('/', 1)[1]
    if cache.is_file():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + '.part')
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(tmp), hash_prefix=cache.stem.rsplit('-', 1)[-1], progress=False)
        os.replace(tmp, cache)
    except Exception as exc:  # noqa: BLE001 - offline, refused, bad hash: say what to do
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f'could not download {uri} from {url} ({type(exc).__name__}: {exc}). Offline? Put the file '
                           f'at {cache}, or set model.backbone.pretrained to a local ResNetV1c file or None') from exc
    finally:
        socket.setdefaulttimeout(previous)
    return cache
