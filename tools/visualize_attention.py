"""Draw what a checkpoint's attention modules look at, for one image.

python tools/visualize_attention.py --ckpt CKPT --image IMG [--points x,y ...] [--class-id ID_OR_NAME] --out DIR
                                    [--single]

One panel figure per point, <stem>_x<X>_y<Y>_panels.png, for whichever attention modules the model
contains (every module of the zoo declares its maps): the input with the point marked, the
prediction with its legend, the point's criss-cross weights after each pass and their composition
over the R passes, its attention row (PAM, non-local), spatial gates, channel and branch weights as
bars, and Grad-CAM of a class (default: the class predicted at the point). Each panel is titled with
its module, map, point and scale (log or power where the weights span orders of magnitude), with a
colour bar; attention cells are drawn nearest-neighbour, each panel 780 px wide. --single writes one
PNG per map instead (for scripts). Also <stem>_prediction.png and <stem>_attention.json (what each
file and panel shows). Points are pixels (x, y) of the original image (default: its centre).
"""
from __future__ import annotations

import argparse
import sys

from seg.apis.visualize import parse_point, visualize_attention


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True, help='checkpoint written by tools/train.py')
    parser.add_argument('--image', required=True, help='the image')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--points', nargs='+', type=parse_point, help='pixels x,y of the image (default: centre)')
    parser.add_argument('--class-id', help='Grad-CAM class, index or name (default: the class at the first point)')
    parser.add_argument('--config', help='config file (default: the one stored in the checkpoint)')
    parser.add_argument('--device', help='cpu, cuda ... (default: cuda when available)')
    parser.add_argument('--top', type=int, default=20, help='channels shown in the bar charts')
    parser.add_argument('--alpha', type=float, default=0.55, help='heatmap opacity (--single)')
    parser.add_argument('--cam-layers', nargs='+', help='Grad-CAM target modules (default: the decode '
                        "head's last feature layer, e.g. decode_head.bottleneck)")
    parser.add_argument('--no-grad-cam', action='store_true', help='skip Grad-CAM')
    parser.add_argument('--single', action='store_true',
                        help='one PNG per map at the image size (for scripts) instead of one panel figure per point')
    args = parser.parse_args(argv)
    result = visualize_attention(args.ckpt, args.image, args.out, points=args.points, class_id=args.class_id,
                                 config=args.config, device=args.device, top=args.top, alpha=args.alpha,
                                 layers=args.cam_layers, with_grad_cam=not args.no_grad_cam,
                                 single=args.single)
    files = [p for paths in result.values() for p in paths]
    print(f'wrote {len(files)} file(s) to {args.out}:')
    for path in files:
        print(f'  {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
