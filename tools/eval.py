"""Evaluate a checkpoint: python tools/eval.py --ckpt work_dirs/X/best_mIoU_iter_N.pth [--mode slide] [--out m.json]
    [--plots DIR] [--tta] [--format-only --out-dir DIR [--split test]] [--precision fp32]

The checkpoint carries its resolved config; --config overrides it. --out writes the metrics as JSON
(top-level mIoU). --format-only --out-dir DIR writes the benchmark's results files (Cityscapes:
<city>_<seq>_<frame>_leftImg8bit.png holding labelIds, for the test server; --split test for the
test images). --tta averages the softmax over scales 0.5 ... 1.75 and flips (mmsegmentation's ms+flip).
"""
import argparse

from mmengine.config import DictAction

from seg.apis import evaluate
from seg.apis.evaluate import EVAL_METRICS
from seg.engine.precision import PRECISIONS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True, help='checkpoint written by tools/train.py or tools/convert_checkpoint.py')
    parser.add_argument('--config', help='config file (default: the one stored in the checkpoint)')
    parser.add_argument('--mode', choices=['whole', 'slide'], help='inference mode (default: the config)')
    parser.add_argument('--split', choices=['val', 'test'], default='val')
    parser.add_argument('--out', help='write the metrics (and confusion matrix, per-image counts) to this JSON file')
    parser.add_argument('--plots', help='write confusion_matrix.png (row-normalised) and per_class_iou.png here')
    parser.add_argument('--tta', action='store_true', help='multi-scale (0.5 ... 1.75) + flip test-time augmentation')
    parser.add_argument('--tta-ratios', nargs='+', type=float, help='the TTA scales (default 0.5 0.75 1.0 1.25 1.5 1.75)')
    parser.add_argument('--format-only', action='store_true', help='only write the results files (no metrics)')
    parser.add_argument('--out-dir', help='folder of the results files (Cityscapes labelIds PNGs)')
    parser.add_argument('--device', help='cpu, cuda, cuda:1 ... (default: cuda when available)')
    parser.add_argument('--precision', choices=PRECISIONS, default='auto')
    parser.add_argument('--channels-last', choices=['auto', 'on', 'off'], default='auto')
    parser.add_argument('--no-fold-bn', action='store_true', help='keep the BatchNorms (slower, same results)')
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--metrics', nargs='+', default=[], choices=EVAL_METRICS,
                        help='beyond mIoU (docs/metrics.md): boundary (Boundary IoU, trimap accuracy), '
                             'objects (recall and IoU by object size), erf (effective receptive field), '
                             'attention (what each attention module attends to)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)
    tta = dict(ratios=args.tta_ratios, flip=True) if args.tta and args.tta_ratios else (True if args.tta else None)
    evaluate(args.ckpt, config=args.config, mode=args.mode, out=args.out, device=args.device, metrics=args.metrics,
             cfg_options=args.cfg_options, split=args.split, plots=args.plots, tta=tta, format_only=args.format_only,
             out_dir=args.out_dir, precision=args.precision,
             channels_last={'auto': 'auto', 'on': True, 'off': False}[args.channels_last], fold_bn=not args.no_fold_bn,
             num_workers=args.num_workers)


if __name__ == '__main__':
    main()
