import math
import os

import pytest
import torch
from torch import nn

# One thread per test process: tiny tensors gain nothing from more, and pytest-xdist runs two processes.
torch.set_num_threads(1)
os.environ.setdefault('HF_HUB_OFFLINE', '1')

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
