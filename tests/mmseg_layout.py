"""Random, perturbed weights in mmsegmentation's key layout, the same on every machine.

Shared by the conversion tests and by ``tests/data/mmseg/make_golden.py``, which computed the
stored logits with mmsegmentation 1.2.2 itself (in a throwaway venv, never in CI): the weights are
regenerated here from the key names, the shapes and a seed with numpy's PCG64 generator, so only
the small logits are stored.
"""
from __future__ import annotations

import numpy as np

ARCHS = ('fcn', 'ccnet', 'danet', 'nonlocal')

NEW_ARCHS = ('psp', 'aspp', 'ocr', 'ema', 'gc', 'isa', 'dnl', 'ann', 'psa', 'apc', 'dm')
"""mmsegmentation's other context heads (their goldens use a 72x104 input: a 9x13 feature that no
pooling grid, ISA group or PSA mask divides evenly)."""

INPUT_SHAPES = {arch: (1, 3, 72, 104) for arch in NEW_ARCHS}
GOLDEN_STRIDE = {arch: 4 for arch in NEW_ARCHS}
"""Their stored logits are every 4th row and column of the 72x104 output."""


def random_weights(keys_shapes: list[tuple[str, list[int]]], seed: int) -> dict[str, np.ndarray]:
    """Weights for every (key, shape), in order: convolution kernels scaled by their fan-in, BN weights
    around 1, biases and running means around 0, running variances in [0.5, 1.5], the attention gammas
    (``*.gamma.scale``) around 0.5 so that attention counts, ``num_batches_tracked`` 100."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in keys_shapes:
        shape = tuple(shape)
        if key.endswith('num_batches_tracked'):
            out[key] = np.array(100, dtype=np.int64)
        elif key.endswith('running_var'):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith('running_mean'):
            out[key] = rng.normal(0.0, 0.1, shape).astype(np.float32)
        elif key.endswith('gamma.scale'):
            out[key] = np.asarray(0.5 + rng.normal(0.0, 0.05), dtype=np.float32).reshape(shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            out[key] = (rng.normal(0.0, 1.0, shape) / np.sqrt(fan_in)).astype(np.float32)
        elif key.endswith('weight'):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[key] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    return out


def random_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A normalised input batch."""
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)
