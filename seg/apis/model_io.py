"""Building a model from a config and filling it from a checkpoint, with clear mismatch errors."""
from __future__ import annotations

import torch
from mmengine.config import Config
from torch import nn

from seg.engine.checkpoint import config_from_checkpoint, load_checkpoint, load_state_into
from seg.engine.config import import_all, load_config
from seg.models.factory import without_pretrained
from seg.registry import MODELS


def build_model(cfg: Config, keep_pretrained: bool = False) -> nn.Module:
    """The segmentor of ``cfg.model``; its backbone reads no ImageNet weights unless ``keep_pretrained``
    (evaluation and inference never need them: the checkpoint has every weight)."""
    import_all()
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    return MODELS.build(model_cfg if keep_pretrained else without_pretrained(model_cfg))


def model_from_checkpoint(ckpt_path: str, config: str | None = None, cfg_options: dict | None = None,
                          device: str | torch.device | None = None) -> tuple[nn.Module, Config, dict]:
    """(model in eval mode on ``device``, its config, the checkpoint's meta)."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = load_config(config, cfg_options) if config else load_config(
        config_from_checkpoint(ckpt, ckpt_path), cfg_options)
    model = build_model(cfg)
    load_state_into(model, ckpt['state_dict'], ckpt_path,
                    f'the config {config!r}' if config else f'the config stored in {ckpt_path!r}')
    device = torch.device(device) if device else torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return model.to(device).eval(), cfg, ckpt.get('meta') or {}
