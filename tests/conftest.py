import os

import pytest
import torch

# One thread per test process: tiny tensors gain nothing from more, and pytest-xdist runs two processes.
torch.set_num_threads(1)
os.environ.setdefault('HF_HUB_OFFLINE', '1')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
