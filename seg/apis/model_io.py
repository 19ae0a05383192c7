"""Building a model from a config and filling it from a checkpoint, with clear mismatch errors."""
from __future__ import annotations

import torch
from mmengine.config import Config
from torch import nn

from seg.engine.checkpoint import config_from_checkpoint, load_checkpoint
from seg.registry import MODELS

from .config import import_all, load_config


def build_model(cfg: Config) -> nn.Module:
    import_all()
    model_cfg = cfg.model.copy()
    # Evaluation / inference never needs ImageNet weights: the checkpoint has them all.
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone = dict(model_cfg.backbone, pretrained=None)
    return MODELS.build(model_cfg)


def load_model_state(model: nn.Module, state: dict, ckpt_path: str, config_name: str) -> None:
    """Strict load; a class-count or shape mismatch names the key, both shapes and both files."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            hint = ''
            if key.endswith(('cls.1.weight', 'cls.1.bias')):
                hint = (f': the checkpoint predicts {value.shape[0]} classes but the config '
                        f'{config_name!r} builds {own[key].shape[0]} (model.num_classes)')
            raise ValueError(f'checkpoint {ckpt_path!r} does not fit the config {config_name!r}: {key} has '
                             f'shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}{hint}')
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f'checkpoint {ckpt_path!r} does not fit the config {config_name!r}: '
                         f'{len(missing)} missing keys (e.g. {missing[:3]}), '
                         f'{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})')
    model.load_state_dict(state)


def model_from_checkpoint(ckpt_path: str, config: str | None = None, cfg_options: dict | None = None,
                          device: str | torch.device | None = None) -> tuple[nn.Module, Config, dict]:
    """(model in eval mode on ``device``, its config, the checkpoint's meta)."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = load_config(config, cfg_options) if config else load_config(
        config_from_checkpoint(ckpt, ckpt_path), cfg_options)
    model = build_model(cfg)
    load_model_state(model, ckpt['state_dict'], ckpt_path, config or f'{ckpt_path} (meta.cfg)')
    device = torch.device(device) if device else torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return model.to(device).eval(), cfg, ckpt.get('meta') or {}
