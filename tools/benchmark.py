"""Time a config's model: python tools/benchmark.py CONFIG [--ckpt CKPT] [--device cpu|cuda] [--repeat 3]
[--amp] [--compile] [--channels-last auto|on|off] [--shape H W] [--batch-size B] [--mode eval|train] [--precision fp32|auto|int8]

Eval mode times whole-image inference as mmsegmentation's benchmark does (batch 1, warm-up passes,
then N timed images, repeated); train mode one optimizer step of the training losses. Without
--ckpt the weights are random, and the input is always random. Prints the passes per repeat, fps
mean ± std, peak memory, and last `median_s=<seconds per pass>`.
"""
import argparse

from seg.apis.benchmark import BenchmarkSettings, run_benchmark
from seg.engine.precision import CHANNELS_LAST_CHOICES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--ckpt', help='weights to load (default: random init from the config)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    parser.add_argument('--mode', choices=['eval', 'train'], default='eval')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=(512, 1024))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--precision', choices=['fp32', 'auto', 'bf16', 'fp16', 'int8'], default='auto',
                        help="'auto': the default fast settings (bf16 + channels-last where native; in eval, int8 "
                             "where not and its guard passes), 'fp32': plain, 'int8': eval only")
    parser.add_argument('--amp', action='store_true', help='mixed precision whatever the hardware')
    parser.add_argument('--compile', action='store_true', help='torch.compile (compile time reported apart)')
    parser.add_argument('--channels-last', choices=list(CHANNELS_LAST_CHOICES), default='auto',
                        help="memory format ('auto': channels-last with bf16 / fp16, and for fp32 on the CPU)")
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--iters', type=int, help='timed passes per repeat (default 200 on CUDA, 10 on CPU)')
    parser.add_argument('--warmup', type=int, help='untimed passes per repeat (default 5 on CUDA, 2 on CPU)')
    parser.add_argument('--no-fold-bn', action='store_true', help='eval: keep the BatchNorms')
    parser.add_argument('--check-accuracy', type=int, default=0, metavar='N',
                        help='eval: compare the labels with fp32 ones on N images (the accuracy guard)')
    args = parser.parse_args()
    settings = BenchmarkSettings(
        config=args.config, ckpt=args.ckpt, device=args.device, mode=args.mode, shape=tuple(args.shape),
        batch_size=args.batch_size, precision=args.precision, amp=args.amp, compile=args.compile,
        channels_last=CHANNELS_LAST_CHOICES[args.channels_last],
        repeat=args.repeat, iters=args.iters, warmup=args.warmup, fold_bn=not args.no_fold_bn,
        check_accuracy=args.check_accuracy)
    print(run_benchmark(settings)[2])


if __name__ == '__main__':
    main()
