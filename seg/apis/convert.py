"""Converting published checkpoints: mmsegmentation 1.x models -> ``seg`` checkpoints that
``tools/eval.py`` and ``tools/infer.py`` run with nothing else."""
from __future__ import annotations

import os

from seg.engine.checkpoint import load_checkpoint, load_state_into, save_checkpoint_file
from seg.engine.config import load_config
from seg.engine.config_data import config_to_data
from seg.models.convert import HEAD_RULES, convert_mmseg_state_dict
from seg.registry import DATASETS

from .model_io import build_model

__all__ = ['convert_checkpoint']


def _dataset_meta(cfg) -> dict:
    """Classes and palette of the config's dataset, from its class (the data need not be here)."""
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    ds = loader.get('dataset', {})
    meta = dict(getattr(DATASETS.get(ds['type']), 'METAINFO', {})) if isinstance(ds.get('type'), str) else {}
    meta = {'classes': list(ds.get('classes') or meta.get('classes') or []),
            'palette': [list(c) for c in (ds.get('palette') or meta.get('palette') or [])],
            'ignore_index': cfg.model.get('ignore_index', 255)}
    return meta


def convert_checkpoint(src: str, dst: str, config: str, source: str = 'mmseg') -> dict:
    """Convert ``src`` (an mmsegmentation 1.x ``{'state_dict': ..., 'meta': ...}`` checkpoint) to a ``seg``
    checkpoint ``dst`` for ``config``: the weights renamed, the config stored as data, the classes and
    the palette of its dataset.

    Args:
        src: the mmsegmentation checkpoint (read with ``weights_only=True``; its stored config is ignored).
        dst: where to write the ``seg`` checkpoint.
        config: the ``seg`` config the model is built from (e.g. ``configs/ccnet/ccnet_r50-d8_...py``).
        source: ``'mmseg'``.

    Returns:
        The checkpoint written.

    Raises:
        ValueError: another source, a head without a mapping, or any key of the checkpoint or of the
            model left unmatched (both lists named: a partial load never passes).
    """
    if source != 'mmseg':
        raise ValueError(f"--from {source!r}: only 'mmseg' (mmsegmentation 1.x checkpoints) converts")
    cfg = load_config(config)
    model_cfg = cfg.model
    head = model_cfg.decode_head.type
    aux = model_cfg.auxiliary_head.type if model_cfg.get('auxiliary_head') else None
    if head not in HEAD_RULES:
        raise ValueError(f'{config}: decode head {head!r} has no mmsegmentation counterpart; '
                         f'converting supports {", ".join(HEAD_RULES)}')
    ckpt = load_checkpoint(src)
    state, unknown = convert_mmseg_state_dict(ckpt['state_dict'], head, aux)
    model = build_model(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    leftover = sorted(unknown + [k for k in state if k not in own])
    if missing or leftover:
        raise ValueError(f'{src} does not convert to {config}: {len(leftover)} checkpoint keys left over '
                         f'{leftover[:20]}{" ..." if len(leftover) > 20 else ""}, {len(missing)} model keys missing '
                         f'{missing[:20]}{" ..." if len(missing) > 20 else ""}')
    load_state_into(model, state, src, f'the config {config!r}')  # shapes, strictly
    meta = {'cfg': config_to_data(cfg), 'dataset_meta': _dataset_meta(cfg), 'converted_from': os.path.basename(src),
            'source': 'mmsegmentation'}
    out = {'state_dict': {k: v.detach().clone() for k, v in state.items()}, 'meta': meta}
    save_checkpoint_file(out, dst)
    return out
