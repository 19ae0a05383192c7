"""Plot a run's training curves: python tools/plot_logs.py WORK_DIR [--out DIR]

Reads mmengine's WORK_DIR/<timestamp>/vis_data/scalars.json (every run in the folder, a resumed one
replacing the steps it repeats; a scalars.json path works too) and writes loss.png, lr.png and
miou.png (mIoU, mAcc, aAcc of the validations; only when there was one) into DIR
(default WORK_DIR/plots).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from seg.visualization.plots import plot_training_curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir', help='a training work dir (or one scalars.json)')
    parser.add_argument('--out', help='output folder (default WORK_DIR/plots)')
    args = parser.parse_args(argv)
    base = args.work_dir if osp.isdir(args.work_dir) else osp.dirname(osp.abspath(args.work_dir))
    out = args.out or osp.join(base, 'plots')
    written = plot_training_curves(args.work_dir, out)
    for path in written.values():
        print(f'wrote {path}')
    if 'miou' not in written:
        print('no validation in the logs: miou.png not written')
    return 0


if __name__ == '__main__':
    sys.exit(main())
