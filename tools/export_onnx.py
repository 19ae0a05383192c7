"""Export a checkpoint's model to ONNX: python tools/export_onnx.py --ckpt CKPT --out model.onnx [--shape H W] [--dynamic]

Every head exports (FCN, CCNet, DANet, Non-local and the attention-zoo heads). The graph maps a
normalised image (1, 3, H, W) to logits at the input size; its metadata carries the config, the
classes and the palette, so tools/infer.py --onnx model.onnx runs it through onnxruntime.
"""
from __future__ import annotations

import argparse
import sys

from seg.apis.export import export_onnx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True)
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--shape', nargs=2, type=int, default=[512, 1024], metavar=('H', 'W'),
                        help='input height and width of the example (the graph\'s, unless --dynamic)')
    parser.add_argument('--dynamic', action='store_true', help='dynamic height and width')
    parser.add_argument('--config', help='config overriding the checkpoint\'s')
    parser.add_argument('--opset', type=int, default=18)
    args = parser.parse_args(argv)
    print(f'wrote {export_onnx(args.ckpt, args.out, tuple(args.shape), args.dynamic, args.config, args.opset)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
