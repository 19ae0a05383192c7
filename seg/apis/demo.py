"""The embedded demo: synthetic data -> train -> evaluate -> infer, on CPU."""
from __future__ import annotations

import glob
import os.path as osp
import time

from .evaluate import evaluate
from .inference import infer_paths
from .train import train


def run_demo(config: str = 'configs/demo_ccnet.py', work_dir: str | None = None,
             cfg_options: dict | None = None) -> dict:
    """Train the demo config, evaluate its best checkpoint and segment the val images."""
    start = time.time()
    name = osp.splitext(osp.basename(config))[0]
    work_dir = work_dir or osp.join('work_dirs', name)
    runner = train(config, work_dir=work_dir, cfg_options=cfg_options)
    best = sorted(glob.glob(osp.join(work_dir, 'best_mIoU_iter_*.pth')))
    ckpt = best[-1] if best else osp.join(work_dir, f'iter_{runner.iter}.pth')
    print(f'\n== evaluating {ckpt}')
    metrics = evaluate(ckpt, out=osp.join(work_dir, 'metrics.json'))
    val_root = runner.cfg.val_dataloader.dataset.data_root
    images = osp.join(val_root, 'img_dir', 'val')
    out_dir = osp.join(work_dir, 'infer')
    print(f'\n== inference on {images} -> {out_dir}')
    summary = infer_paths(ckpt, images, out_dir)
    minutes = (time.time() - start) / 60
    print(f'\nval mIoU {metrics["mIoU"] / 100:.3f}  (aAcc {metrics["aAcc"] / 100:.3f}, '
          f'mAcc {metrics["mAcc"] / 100:.3f}); {len(summary.processed)} overlays in {out_dir}; '
          f'{minutes:.1f} min in all')
    return metrics
