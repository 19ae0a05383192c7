"""The process-wide random states (torch CPU and CUDA, numpy, Python) as plain data.

A checkpoint stores them so that a resumed run continues with exactly the random numbers the
uninterrupted run would have drawn (dropout masks, ...). Everything is lists, ints and uint8
tensors, so the checkpoint still loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ['get_rng_state', 'isolated_rng', 'set_rng_state']


def get_rng_state() -> dict:
    """The current torch (CPU and initialised CUDA devices), numpy and Python random states."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {'bit_generator': np_state['bit_generator'], 'key': np_state['state']['key'].tolist(),
                  'pos': int(np_state['state']['pos']), 'has_gauss': int(np_state['has_gauss']),
                  'gauss': float(np_state['gauss'])},
        'python': [py_version, list(py_internal), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state['torch'])
    np_state = state['numpy']
    np.random.set_state({'bit_generator': np_state['bit_generator'],
                         'state': {'key': np.asarray(np_state['key'], dtype=np.uint32), 'pos': np_state['pos']},
                         'has_gauss': np_state['has_gauss'], 'gauss': np_state['gauss']})
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@contextlib.contextmanager
def isolated_rng() -> Iterator[dict]:
    """Run a block (validation, say) without moving the random states the training loop sees.

    Yields the states at entry, which are also the states restored at exit.
    """
    state = get_rng_state()
    try:
        yield state
    finally:
        set_rng_state(state)
