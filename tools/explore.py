"""Explore what the attention of one or more checkpoints looks at, in the browser.

python tools/explore.py --ckpt A.pth [--ckpt B.pth ...] [--images DIR] [--host 127.0.0.1] [--port 8765]

Serves a local page (its address is printed): pick an image of DIR or upload one, and the prediction
and its legend appear for each checkpoint; click a pixel and every attention module of each checkpoint
shows what that pixel draws from (criss-cross passes and their composition, PAM / non-local rows, the
maps of every other module; gates as maps and bars), side by side, then the pixel's effective receptive
field; pick a class for Grad-CAM; download the figure as PNG. Binds 127.0.0.1 unless --host says
otherwise (there is no authentication); serves no file outside DIR; uploads stay in memory.
"""
from __future__ import annotations

import argparse
import sys

from seg.apis.explore import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', action='append', required=True,
                        help='checkpoint written by tools/train.py (repeat to compare models side by side)')
    parser.add_argument('--images', help='folder of images to choose from (searched recursively)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to bind (default 127.0.0.1: this machine only; anything else is explicit)')
    parser.add_argument('--port', type=int, default=8765, help='port (0: a free one; default 8765)')
    parser.add_argument('--device', help='cpu, cuda ... (default: cuda when available)')
    parser.add_argument('--cache', type=int, default=2,
                        help='images whose features (and autograd graph, for the receptive field) stay in memory')
    args = parser.parse_args(argv)
    try:
        return serve(args.ckpt, args.images, args.host, args.port, args.device, args.cache)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
