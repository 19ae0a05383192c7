"""Train a segmentor: python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|CKPT]] [--precision P] [--cfg-options k=v ...]

Multi-GPU / multi-node: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch
SIGTERM / SIGUSR1 (preemption) save the current iteration and exit with code 75; rerun with --resume.
"""
import argparse
import shlex
import sys

from mmengine.config import DictAction

from seg.apis import train
from seg.engine.precision import CHANNELS_LAST_CHOICES
from seg.engine.preemption import Preempted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/ccnet_r50.py')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default work_dirs/<config>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='auto|CKPT',
                        help='continue from the latest checkpoint of the work dir, or start when there is none '
                             '(auto, the default of the bare flag), or from the checkpoint CKPT')
    parser.add_argument('--precision', choices=['auto', 'fp32', 'bf16', 'fp16'],
                        help="default the config's: fp32 for the published recipes, auto for the CPU demo "
                             "('auto': bf16 where the CPU/GPU has native bf16, else fp32)")
    parser.add_argument('--channels-last', choices=list(CHANNELS_LAST_CHOICES),
                        help="NHWC memory format (default the config's; 'auto': on with bf16/fp16, and fp32 on the CPU)")
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision whatever the hardware: bf16, or fp16 + grad scaler on older GPUs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. train_cfg.max_iters=1000')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help="'pytorch' under torchrun (DDP)")
    args = parser.parse_args()
    layout = None if args.channels_last is None else CHANNELS_LAST_CHOICES[args.channels_last]
    try:
        train(args.config, work_dir=args.work_dir, resume=args.resume or False, amp=args.amp,
              precision=args.precision, channels_last=layout, launcher=args.launcher, cfg_options=args.cfg_options)
    except Preempted as stop:
        again = sys.argv if '--resume' in sys.argv else [*sys.argv, '--resume']
        print(f'{stop}\nto continue exactly where it stopped, run: python {shlex.join(again)}', file=sys.stderr)
        sys.exit(stop.exit_code)


if __name__ == '__main__':
    main()
