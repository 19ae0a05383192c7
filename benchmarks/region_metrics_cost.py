"""Time the per-image metrics beyond mIoU (docs/metrics.md) on a Cityscapes-sized image and print a table.

python benchmarks/region_metrics_cost.py [--repeat 5] [--size 1024 2048] [--classes 19]

The label map is blocky (32 x 64 blocks of random classes) with 10 % of the prediction flipped to another
class, so that every class has boundaries, objects of every size and false positives. Best of --repeat.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from seg.analysis.measure import describe_environment, environment
from seg.evaluation.boundary import boundary_counts, trimap_counts
from seg.evaluation.objects import object_counts, object_size_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--size', type=int, nargs=2, default=(1024, 2048))
    parser.add_argument('--classes', type=int, default=19)
    args = parser.parse_args()
    h, w = args.size
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, args.classes, (h // 32 + 1, w // 64 + 1))
    gt = np.kron(blocks, np.ones((32, 64), dtype=np.int64))[:h, :w]  # [H, W]
    pred = np.where(rng.random((h, w)) < 0.1, (gt + 1) % args.classes, gt)
    cases = [('boundary_counts', lambda: boundary_counts(pred, gt, args.classes)),
             ('trimap_counts (1, 2, 4, 8, 16 px)', lambda: trimap_counts(pred, gt)),
             ('object_counts', lambda: object_counts(pred, gt, args.classes)),
             ('object_size_counts (recall and IoU by size)', lambda: object_size_counts(pred, gt, args.classes))]
    print(f'# {describe_environment(environment("cpu"))}')
    print(f'# one {h}x{w} image, {args.classes} classes, best of {args.repeat}\n')
    print('| function | ms per image |\n|---|---|')
    for name, fn in cases:
        best = min(_seconds(fn) for _ in range(args.repeat))
        print(f'| {name} | {1000 * best:.0f} |')


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == '__main__':
    main()
