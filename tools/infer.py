"""Segment images or a video: python tools/infer.py --ckpt CKPT --input DIR_OR_FILE --output DIR
                               python tools/infer.py --ckpt CKPT --input clip.mp4 [--output out.mp4]
                               python tools/infer.py --ckpt CKPT --input 0        (a camera; Ctrl-C ends it)

Images: writes <name>_label.png (class ids), <name>_color.png and <name>_overlay.png per image. Unreadable
files are skipped with a warning; the exit code is non-zero only when no image could be processed.
DataLoader workers decode, same-size images go through the model --batch-size at a time, a thread
writes the PNGs. --precision auto (default) runs bf16 where the hardware has it (see
seg/engine/precision.py); --onnx MODEL runs an export of tools/export_onnx.py through onnxruntime.
A video (a file with a video suffix, or a camera index): its frames go through the same batches, and
the overlay video is written at the source's size and frame rate (25 fps when it reports none), by
default to infer/<name>_overlay.mp4 beside the checkpoint; never over the input. It is renamed from
<name>.partial.mp4 when done; Ctrl-C keeps the frames written so far (see seg/apis/video.py).
"""
import argparse
import sys

from seg.apis import infer_paths
from seg.apis.video import infer_video, is_video_source
from seg.engine.precision import PRECISIONS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', help='checkpoint (carries its config); not needed with --onnx')
    parser.add_argument('--onnx', help='an ONNX model written by tools/export_onnx.py, run by onnxruntime')
    parser.add_argument('--input', required=True, help='an image file, a folder of images, a video file or a camera '
                        'index (0, 1 ...)')
    parser.add_argument('--output', help='output folder (images); the video to write, .mp4 / .avi (video)')
    parser.add_argument('--fps', type=float, help='frame rate of the output video (default: the source\'s)')
    parser.add_argument('--labels', help='video: also write each frame\'s class ids as <frame>.png in this folder')
    parser.add_argument('--config', help='config file (default: the one stored in the checkpoint)')
    parser.add_argument('--mode', choices=['whole', 'slide'])
    parser.add_argument('--device')
    parser.add_argument('--alpha', type=float, default=0.5, help='overlay opacity')
    parser.add_argument('--batch-size', type=int, default=4, help='images (frames) of one size per forward')
    parser.add_argument('--num-workers', type=int, default=2,
                        help='DataLoader workers decoding the images (a video has one reader thread)')
    parser.add_argument('--precision', choices=PRECISIONS, default='auto')
    parser.add_argument('--channels-last', choices=['auto', 'on', 'off'], default='auto')
    parser.add_argument('--no-fold-bn', action='store_true', help='keep the BatchNorms (slower, same results)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model (compile time reported)')
    args = parser.parse_args()
    if not args.ckpt and not args.onnx:
        parser.error('give --ckpt or --onnx')
    channels_last = {'auto': 'auto', 'on': True, 'off': False}[args.channels_last]
    if is_video_source(args.input):
        video = infer_video(args.ckpt, args.input, args.output, config=args.config, device=args.device, mode=args.mode,
                            alpha=args.alpha, batch_size=args.batch_size, precision=args.precision,
                            channels_last=channels_last, fold_bn=not args.no_fold_bn, compile=args.compile,
                            onnx=args.onnx, fps=args.fps, labels_dir=args.labels)
        size = f'{video.size[1]}x{video.size[0]}'
        print((f'wrote {video.frames} frame(s) of {size} at {video.fps:g} fps to {video.output}' if video.frames
               else 'wrote no frame') + (' (interrupted)' if video.interrupted else ''))
        print(f'{video.frames_per_second:.1f} frames/s ({video.precision})'
              + (f'; compile {video.compile_seconds:.1f} s' if video.compile_seconds else ''))
        return 0 if video.frames else 1
    if args.output is None:
        parser.error('--output (a folder) is needed for images')
    summary = infer_paths(args.ckpt, args.input, args.output, config=args.config, device=args.device, mode=args.mode,
                          alpha=args.alpha, batch_size=args.batch_size, num_workers=args.num_workers,
                          precision=args.precision, channels_last=channels_last, fold_bn=not args.no_fold_bn,
                          compile=args.compile, onnx=args.onnx)
    print(f'processed {len(summary.processed)} image(s), skipped {len(summary.skipped)} unreadable file(s)'
          + (': ' + ', '.join(summary.skipped) if summary.skipped else ''))
    print(f'{summary.images_per_second:.1f} images/s ({summary.precision})'
          + (f'; compile {summary.compile_seconds:.1f} s' if summary.compile_seconds else ''))
    return 0 if summary.processed else 1


if __name__ == '__main__':
    sys.exit(main())
