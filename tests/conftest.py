import math
import os
import tempfile

import mmengine  # noqa: F401  (see below)
import pytest
import torch
from torch import nn

# mmengine imports yapf, which on its first import in a fresh environment writes its grammar pickle to the
# user's cache, not atomically: two pytest-xdist workers importing it at once can read a half-written file
# (EOFError at collection). This conftest is loaded by the controlling process before the workers start,
# so the import above writes the pickle once, first.

# One thread per test process: tiny tensors gain nothing from more, and pytest-xdist runs two processes.
torch.set_num_threads(1)
os.environ.setdefault('HF_HUB_OFFLINE', '1')
# The int8 calibration cache (seg.engine.quantize) of the tests and the tools they start: never the
# user's ~/.cache. (On a CPU without native bf16, inference with precision 'auto' calibrates int8.)
os.environ.setdefault('SEG_CACHE_DIR', tempfile.mkdtemp(prefix='seg-test-cache-'))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every weight, BN statistic and attention gamma away from its initial value, so each part counts."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
        else:
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith(('weight', 'gamma')) else 0.0))
    for name, b in model.named_buffers():
        if name.endswith('running_var'):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        elif name.endswith('running_mean'):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return model


TINY_DEMO = """
_base_ = ['{root}/configs/demo_ccnet.py']
data_root = '{data}'
crop = (32, 64)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_images=8, img_size=crop,
                                     pipeline=[dict(type='RandomFlip', prob=0.5)]))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, num_images={val_images}, img_size=crop, pipeline=[]))
test_dataloader = val_dataloader
model = dict(backbone=dict(channels=(8, 8, 16, 16)),
             decode_head=dict(in_channels=16, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
max_iters = 4
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='{loop}', max_iters=max_iters, val_interval={val_interval})
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4, max_keep_ckpts=1{best}))
{extra}
"""


def tiny_demo_config(data, val_images: int = 4, loop: str = 'SegTrainLoop', val_interval: int = 4,
                     save_best: bool = False, extra: str = '') -> str:
    """A config text of the demo network at widths (8, 8, 16, 16) on 8 + ``val_images`` synthetic scenes
    of 32x64 under ``data``, trained 4 iterations with one checkpoint (the best mIoU one too if asked)."""
    best = ",\n                                     save_best='mIoU', rule='greater'" if save_best else ''
    return TINY_DEMO.format(root=ROOT, data=data, val_images=val_images, loop=loop, val_interval=val_interval,
                            best=best, extra=extra)
