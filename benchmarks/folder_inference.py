"""Folder inference, today's tools/infer.py against a baseline tree's, side by side in one run.

    git worktree add /tmp/seg-baseline 699140a      # the loop before the fast path
    python benchmarks/folder_inference.py --ckpt CKPT --baseline /tmp/seg-baseline [--images 240]
        [--size 192 384] [--work /tmp/folder_bench]
    python benchmarks/folder_inference.py --ckpt CKPT --rss-images 2000 [--size 96 192]

``--config CFG`` is passed to every run's ``tools/infer.py``: the baseline tree cannot read the config that
today's checkpoints store (a dict where it expects text), so a checkpoint trained by today's tree needs it.

The first form writes ``--images`` synthetic street scenes (seg.datasets.synthetic) into a folder and
runs on it, one after the other: the baseline tree's ``tools/infer.py`` (its own code, through its
PYTHONPATH), this tree's with the default settings, and this tree's with ``--precision fp32``. Each
run is timed from the start of its process to its end, and again on one image (start-up and
model loading), so the table gives both whole-run images/s and images/s with the start-up taken
out. The written files are compared: the same names, and the share of label pixels equal to the
baseline's.

The second form (``--rss-images``) runs this tree's inference over that many images and samples the
resident memory of the process and its DataLoader workers (/proc, Linux) as the outputs appear:
RSS after the first tenth of the images and at the end.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_images(folder: str, count: int, size: tuple[int, int]) -> None:
    sys.path.insert(0, ROOT)
    from seg.datasets.synthetic import render_street_scene

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        path = os.path.join(folder, f'scene_{i:05d}.png')
        if not os.path.exists(path):
            image, _ = render_street_scene(rng, *size)
            cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def infer_cmd(tree: str, ckpt: str, images: str, out: str, extra=(), config=None) -> tuple[list[str], dict]:
    env = dict(os.environ, PYTHONPATH=tree)
    config_args = ('--config', os.path.abspath(config)) if config else ()
    return [sys.executable, os.path.join(tree, 'tools', 'infer.py'), '--ckpt', ckpt, '--input', images,
            '--output', out, *config_args, *extra], env


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(cmd[1])))
    if proc.returncode:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
    return time.perf_counter() - start


def labels_equal(a: str, b: str) -> tuple[bool, float]:
    names_a = sorted(f for f in os.listdir(a))
    names_b = sorted(f for f in os.listdir(b))
    same = total = 0
    for name in (n for n in names_a if n.endswith('_label.png')):
        x = cv2.imread(os.path.join(a, name), cv2.IMREAD_UNCHANGED)
        y = cv2.imread(os.path.join(b, name), cv2.IMREAD_UNCHANGED)
        if y is None:
            return False, 0.0
        same += int((x == y).sum())
        total += x.size
    return names_a == names_b, same / max(total, 1)


def compare(args) -> None:
    images = os.path.join(args.work, 'images')
    one = os.path.join(args.work, 'one')
    make_images(images, args.images, tuple(args.size))
    os.makedirs(one, exist_ok=True)
    shutil.copy(os.path.join(images, 'scene_00000.png'), one)
    runs = {'baseline': (args.baseline, ()), 'seg (default)': (ROOT, ()), 'seg --precision fp32': (ROOT, ('--precision',
                                                                                                         'fp32'))}
    rows = []
    for name, (tree, extra) in runs.items():
        out = os.path.join(args.work, name.replace(' ', '_').replace('-', ''))
        shutil.rmtree(out, ignore_errors=True)
        startup = timed(*infer_cmd(tree, args.ckpt, one, out + '_one', extra, args.config))
        total = timed(*infer_cmd(tree, args.ckpt, images, out, extra, args.config))
        rows.append((name, out, total, startup))
        print(f'  {name}: {total:.1f} s for {args.images} images, {startup:.1f} s for one', file=sys.stderr)
    base_total, base_startup = rows[0][2], rows[0][3]
    base_rate = (args.images - 1) / (base_total - base_startup)
    print(f'{args.images} images of {args.size[0]}x{args.size[1]}, checkpoint {args.ckpt}\n')
    print('| run | wall s | images/s (whole run) | images/s (start-up out) | speed-up (start-up out) '
          '| same files | label pixels equal to baseline |')
    print('|---|---|---|---|---|---|---|')
    for name, out, total, startup in rows:
        rate = (args.images - 1) / max(total - startup, 1e-9)
        same_names, equal = labels_equal(rows[0][1], out)
        print(f'| {name} | {total:.1f} | {args.images / total:.2f} | {rate:.2f} | {rate / base_rate:.2f}x | '
              f'{"yes" if same_names else "NO"} | {equal * 100:.3f}% |')


def _rss_kib(pid: int) -> tuple[int, int]:
    """VmRSS of the process and the sum over its descendants (the DataLoader workers), KiB."""
    own = workers = 0
    todo = [(pid, True)]
    while todo:
        p, is_main = todo.pop()
        try:
            with open(f'/proc/{p}/status') as f:
                kib = next(int(line.split()[1]) for line in f if line.startswith('VmRSS'))
            own, workers = (own + kib, workers) if is_main else (own, workers + kib)
            with open(f'/proc/{p}/task/{p}/children') as f:
                todo += [(int(c), False) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return own, workers


def rss(args) -> None:
    images = os.path.join(args.work, 'rss_images')
    out = os.path.join(args.work, 'rss_out')
    make_images(images, args.rss_images, tuple(args.size))
    shutil.rmtree(out, ignore_errors=True)
    cmd, env = infer_cmd(ROOT, args.ckpt, images, out, config=args.config)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    samples = []  # (images written, RSS KiB of the process, of its workers)
    while proc.poll() is None:
        done = len(os.listdir(out)) // 3 if os.path.isdir(out) else 0
        samples.append((done, *_rss_kib(proc.pid)))
        time.sleep(0.2)
    if proc.returncode:
        raise RuntimeError(f'{" ".join(cmd)} failed')
    n = args.rss_images
    running = [s for s in samples if 0 < s[0] < n]  # while images are being written
    first = next(s for s in running if s[0] >= n // 10)
    last = running[-1]
    mib = lambda kib: f'{kib / 1024:.0f} MiB'  # noqa: E731
    print(f'{n} images of {args.size[0]}x{args.size[1]}, {len(running)} samples while writing\n')
    print('| when | images written | RSS main process | RSS workers (sum) |')
    print('|---|---|---|---|')
    for name, (done, own, workers) in (('start (after a tenth)', first), ('end (last sample)', last)):
        print(f'| {name} | {done} | {mib(own)} | {mib(workers)} |')
    print(f'| peak while writing | | {mib(max(s[1] for s in running))} | {mib(max(s[2] for s in running))} |')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True)
    parser.add_argument('--baseline', help='a checkout of the baseline (e.g. a git worktree of 699140a)')
    parser.add_argument('--config', help="passed to every run's tools/infer.py (needed by the baseline for "
                        "checkpoints of today's tree)")
    parser.add_argument('--images', type=int, default=240)
    parser.add_argument('--rss-images', type=int, default=0)
    parser.add_argument('--size', type=int, nargs=2, default=(192, 384))
    parser.add_argument('--work', default='/tmp/folder_bench')
    args = parser.parse_args()
    args.ckpt = os.path.abspath(args.ckpt)
    if args.rss_images:
        rss(args)
    elif args.baseline:
        compare(args)
    else:
        parser.error('give --baseline TREE (speed) or --rss-images N (memory)')


if __name__ == '__main__':
    main()
