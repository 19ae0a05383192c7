"""Segment images: python tools/infer.py --ckpt CKPT --input DIR_OR_FILE --output DIR

Writes <name>_label.png (class ids), <name>_color.png and <name>_overlay.png per image. Unreadable
files are skipped with a warning; the exit code is non-zero only when no image could be processed.
"""
import argparse
import sys

from seg.apis import infer_paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', required=True)
    parser.add_argument('--input', required=True, help='an image file or a folder of images')
    parser.add_argument('--output', required=True, help='output folder')
    parser.add_argument('--config', help='config file (default: the one stored in the checkpoint)')
    parser.add_argument('--mode', choices=['whole', 'slide'])
    parser.add_argument('--device')
    parser.add_argument('--alpha', type=float, default=0.5, help='overlay opacity')
    args = parser.parse_args()
    summary = infer_paths(args.ckpt, args.input, args.output, config=args.config, device=args.device,
                          mode=args.mode, alpha=args.alpha)
    print(f'processed {len(summary.processed)} image(s), skipped {len(summary.skipped)} unreadable file(s)'
          + (': ' + ', '.join(summary.skipped) if summary.skipped else ''))
    return 0 if summary.processed else 1


if __name__ == '__main__':
    sys.exit(main())
