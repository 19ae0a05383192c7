"""Train a segmentor: python tools/train.py CONFIG [--work-dir DIR] [--resume] [--precision P] [--cfg-options k=v ...]

Multi-GPU / multi-node: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch
"""
import argparse

from mmengine.config import DictAction

from seg.apis import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/ccnet_r50.py')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default work_dirs/<config>)')
    parser.add_argument('--resume', action='store_true', help='continue from the latest checkpoint')
    parser.add_argument('--precision', choices=['auto', 'fp32', 'bf16', 'fp16'],
                        help="default the config's ('auto': bf16 where the CPU/GPU has native bf16, else fp32)")
    parser.add_argument('--channels-last', choices=['auto', 'on', 'off'],
                        help="NHWC memory format (default the config's; 'auto': on with bf16/fp16)")
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision whatever the hardware: bf16, or fp16 + grad scaler on older GPUs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. train_cfg.max_iters=1000')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help="'pytorch' under torchrun (DDP)")
    args = parser.parse_args()
    layout = {None: None, 'auto': 'auto', 'on': True, 'off': False}[args.channels_last]
    train(args.config, work_dir=args.work_dir, resume=args.resume, amp=args.amp, precision=args.precision,
          channels_last=layout, launcher=args.launcher, cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
