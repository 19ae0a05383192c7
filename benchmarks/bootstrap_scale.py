"""Time and memory of the paired bootstrap of a comparison at the size of real validation sets, and
(``--null``) how often it calls two identically distributed models distinguishable.

    python benchmarks/bootstrap_scale.py [--replicates 1000] [--null]

Scale: for Cityscapes size (500 images, 19 classes, 3 seeds) and ADE20K size (2000 images, 150 classes,
5 seeds), synthetic per-image counts (tp, gt_area, pred_area) of two models, then one call of
``seg.analysis.stats.bootstrap_paired_difference`` (mIoU and every class, both intervals), each case in
a fresh process (scipy.stats imported first, as a comparison's summary has). Prints the seconds of the
first call and of a second one, the process's peak RSS during the calls (VmHWM, reset just before them
through /proc/self/clear_refs; it includes Python, numpy, torch, scipy, seg and the counts) and the
rise above the RSS at their start, and what the earlier indexing implementation's resampled counts
alone would have taken (one [seeds, replicates, images, 3, classes] float64 array per model).

Null (``--null``): two models with the same distribution (per run a seed effect on every class's
true-positive rate, per model and image an image effect shared by the seeds, binomial pixel noise);
the fraction of comparisons called distinguishable (should be about 1 - confidence = 5% or below) for
both seed levels, 3, 5 and 10 seeds, when the seed spread dominates and when the image noise does,
and how often the image-only interval excludes 0 (what the report called distinguishable before).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CASES = {'Cityscapes size': (500, 19, 3), 'ADE20K size': (2000, 150, 5)}


def synthetic_counts(rng: np.random.Generator, n_images: int, n_classes: int, seeds: int) -> list[np.ndarray]:
    """Per seed, (N, 3, C) int64 counts: gt areas of a 512x1024-like image split over a few classes."""
    runs = []
    present = rng.random((n_images, n_classes)) < min(1.0, 8 / n_classes)  # ~8 classes per image
    gt = np.where(present, rng.integers(1_000, 60_000, (n_images, n_classes)), 0)
    for _ in range(seeds):
        rate = rng.uniform(0.5, 0.95, (1, n_classes))
        tp = rng.binomial(gt, rate)
        pred = tp + rng.binomial(gt, 0.1)
        runs.append(np.stack([tp, gt, pred], axis=1).astype(np.int64))
    return runs


def _status(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def one_case(n_images: int, n_classes: int, seeds: int, replicates: int) -> None:
    """Run in a fresh process: prints 'first_seconds second_seconds peak_bytes rise_bytes'."""
    import scipy.stats  # noqa: F401  (imported by any comparison before its differences)
    import torch

    from seg.analysis.stats import bootstrap_paired_difference

    rng = np.random.default_rng(0)
    model = synthetic_counts(rng, n_images, n_classes, seeds)
    base = synthetic_counts(rng, n_images, n_classes, seeds)
    torch.zeros(1) + 1  # torch's CPU allocator started, as in a comparison
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    start_rss = _status('VmRSS')
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        miou, classes = bootstrap_paired_difference(model, base, replicates)
        seconds.append(time.perf_counter() - start)
    peak = _status('VmHWM')
    assert len(classes) == n_classes and miou.n == replicates
    print(seconds[0], seconds[1], peak, peak - start_rss)


def scale(replicates: int) -> None:
    rows = []
    for name, (n, c, s) in CASES.items():
        out = subprocess.run([sys.executable, __file__, '--one', str(n), str(c), str(s), str(replicates)],
                             check=True, capture_output=True, text=True).stdout.split()
        first, second, peak, rise = float(out[0]), float(out[1]), int(out[2]), int(out[3])
        old = s * replicates * n * 3 * c * 8
        rows.append((name, f'{s} x {n} x 3 x {c}', f'{first:.2f}', f'{second:.2f}', f'{peak / 2**20:.0f}',
                     f'{rise / 2**20:.0f}', f'{old / 2**30:.2f}'))
    header = ('case', 'counts per model [seeds x images x 3 x classes]', 'seconds (first call)',
              'seconds (again)', 'peak RSS MiB (process)', 'rise MiB (the calls)', 'indexing: resampled counts GiB')
    print(f'replicates {replicates}, both intervals (seeds and images; images only), mIoU and every class')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '|'.join('---' for _ in header) + '|')
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')


def null_counts(rng, n_images, n_classes, seeds, seed_sd, image_sd, gt):
    """Per seed, (N, 3, C) counts of one model: tp rate = 0.7 + seed effect + this model's image effect."""
    image = rng.normal(0, image_sd, (n_images, 1))  # shared by the seeds: the validation images are fixed
    runs = []
    for _ in range(seeds):
        rate = np.clip(0.7 + rng.normal(0, seed_sd) + image, 0.05, 0.99)
        tp = rng.binomial(gt, np.broadcast_to(rate, gt.shape))
        pred = tp + rng.binomial(gt, 0.1)
        runs.append(np.stack([tp, gt, pred], axis=1))
    return runs


def null(replicates: int, trials: int) -> None:
    from seg.analysis.stats import DISTINGUISHABLE, SEED_LEVELS, bootstrap_paired_difference

    n_images, n_classes = 100, 5
    scenarios = {'seed spread dominates': (0.02, 0.0), 'image noise dominates': (0.001, 0.1)}
    header = ('scenario', 'seeds') + tuple(f'{lvl}: called distinguishable' for lvl in SEED_LEVELS) + \
        ('image-only interval excludes 0 (the verdict before)',)
    print(f'null: two models with the same distribution, {n_images} images, {n_classes} classes, {trials} '
          f'comparisons each, {replicates} replicates, 95% intervals')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '|'.join('---' for _ in header) + '|')
    for name, (seed_sd, image_sd) in scenarios.items():
        for seeds in (3, 5, 10):
            rng = np.random.default_rng(seeds)
            hits = dict.fromkeys(SEED_LEVELS, 0)
            image_only = 0
            for trial in range(trials):
                gt = rng.integers(0, 2_000, (n_images, n_classes))
                a = null_counts(rng, n_images, n_classes, seeds, seed_sd, image_sd, gt)
                b = null_counts(rng, n_images, n_classes, seeds, seed_sd, image_sd, gt)
                for lvl in SEED_LEVELS:
                    miou, _ = bootstrap_paired_difference(a, b, replicates, seed=trial, seed_level=lvl)
                    hits[lvl] += miou.verdict == DISTINGUISHABLE
                image_only += not miou.image_interval.contains_zero
            print(f'| {name} | {seeds} | ' + ' | '.join(f'{hits[lvl] / trials:.1%}' for lvl in SEED_LEVELS)
                  + f' | {image_only / trials:.1%} |', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--replicates', type=int, default=1000)
    parser.add_argument('--null', action='store_true', help='also the false-positive rate under the null')
    parser.add_argument('--trials', type=int, default=400, help='comparisons per null case')
    parser.add_argument('--one', nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_case(*args.one)
        return
    scale(args.replicates)
    if args.null:
        null(args.replicates, args.trials)


if __name__ == '__main__':
    main()
