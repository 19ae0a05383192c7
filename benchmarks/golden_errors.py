"""How far seg's converted models are from mmsegmentation 1.2.2's own logits, per head.

    python benchmarks/golden_errors.py

The same path as ``tests/test_convert.py`` (a random checkpoint in mmseg's key layout, converted,
loaded by ``init_model``, run on the golden input), printing the max absolute difference from the
stored mmseg logits and that difference relative to the largest logit (the test bounds it by 1e-5).
"""
import os
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from seg.apis import init_model  # noqa: E402
from seg.apis.convert import convert_checkpoint  # noqa: E402
from tests.mmseg_layout import ARCHS, NEW_ARCHS, random_input  # noqa: E402
from tests.test_convert import golden, mmseg_checkpoint, tiny_config  # noqa: E402


def main() -> None:
    print('| head | max abs diff | max abs logit | relative |')
    print('|---|---|---|---|')
    for arch in ARCHS + NEW_ARCHS:
        with tempfile.TemporaryDirectory() as tmp:
            meta, expected = golden(arch)
            mmseg_checkpoint(arch, os.path.join(tmp, 'mmseg.pth'))
            with open(os.path.join(tmp, 'tiny.py'), 'w') as f:
                f.write(tiny_config(arch))
            convert_checkpoint(os.path.join(tmp, 'mmseg.pth'), os.path.join(tmp, 'seg.pth'), os.path.join(tmp, 'tiny.py'))
            model = init_model(os.path.join(tmp, 'seg.pth'))
            x = torch.from_numpy(random_input(tuple(meta['input_shape']), meta['input_seed']))
            with torch.no_grad():
                logits = model(x, mode='tensor')
            stride = meta.get('logits_stride', 1)
            logits = logits[..., ::stride, ::stride].numpy()
            err, scale = float(np.abs(logits - expected).max()), float(np.abs(expected).max())
            print(f'| {arch} | {err:.1e} | {scale:.1f} | {err / max(1.0, scale):.1e} |', flush=True)


if __name__ == '__main__':
    main()
