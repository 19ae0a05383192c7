"""Evaluate a checkpoint: python tools/eval.py --ckpt work_dirs/X/best_mIoU_iter_N.pth [--mode slide] [--out m.json]
    [--plots DIR]

The checkpoint carries its resolved config; --config overrides it.
"""
import argparse

from mmengine.config import DictAction

from seg.apis import evaluate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True, help='checkpoint written by tools/train.py')
    parser.add_argument('--config', help='config file (default: the one stored in the checkpoint)')
    parser.add_argument('--mode', choices=['whole', 'slide'], help='inference mode (default: the config)')
    parser.add_argument('--split', choices=['val', 'test'], default='val')
    parser.add_argument('--out', help='write the metrics (and confusion matrix) to this JSON file')
    parser.add_argument('--plots', help='write confusion_matrix.png (row-normalised) and per_class_iou.png here')
    parser.add_argument('--device', help='cpu, cuda, cuda:1 ... (default: cuda when available)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)
    evaluate(args.ckpt, config=args.config, mode=args.mode, out=args.out, device=args.device,
             cfg_options=args.cfg_options, split=args.split, plots=args.plots)


if __name__ == '__main__':
    main()
