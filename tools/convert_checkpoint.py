"""Convert a published checkpoint to a seg checkpoint:

python tools/convert_checkpoint.py --from mmseg IN.pth OUT.pth --config configs/ccnet/ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py

IN.pth: an mmsegmentation 1.x checkpoint of FCN, CCNet, DANet or NonLocal on ResNetV1c-50/101-D8 with its
auxiliary FCN head (read with weights_only=True; its own stored config is ignored). OUT.pth carries the
config (as data), the classes and the palette, so tools/eval.py --ckpt OUT.pth needs nothing else. Keys
left over on either side are an error that lists them.
"""
from __future__ import annotations

import argparse
import sys

from seg.apis.convert import convert_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='the checkpoint to convert')
    parser.add_argument('dst', help='the seg checkpoint to write')
    parser.add_argument('--from', dest='source', default='mmseg', choices=['mmseg'], help='where IN.pth comes from')
    parser.add_argument('--config', required=True, help='the seg config of the model')
    args = parser.parse_args(argv)
    out = convert_checkpoint(args.src, args.dst, args.config, args.source)
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, {len(out["meta"]["dataset_meta"]["classes"])} classes')
    return 0


if __name__ == '__main__':
    sys.exit(main())
