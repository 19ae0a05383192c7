"""A video, from a file or a camera, through a :class:`~seg.apis.predictor.Predictor`: an overlay video out.

A reader thread decodes the frames (OpenCV) into a bounded queue; ``batch_size`` frames at a time go
through the predictor -- the fast path and batching of folder inference, so ``--precision``,
``--onnx``, ``--mode`` and ``--compile`` apply alike -- and a writer thread blends each label
map over its frame (:func:`seg.visualization.overlay`) and appends it to the output, in order, at
the source's frame rate (:data:`DEFAULT_FPS` when the container reports none; the log says so).

The output is written under a temporary name beside it (``<name>.partial<suffix>``) and renamed
to its name when the stream ends, and also on Ctrl-C: the frames written so far are kept (a camera
stream ends that way; interrupted before the first frame, nothing is left). After an error the
partial file is left under its temporary name, and an earlier output of the same name is untouched.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from seg.fileio import ensure_dir, output_path

from .inference import palette_of, write_label
from .predictor import Predictor

__all__ = ['DEFAULT_FPS', 'FOURCC', 'VIDEO_SUFFIXES', 'VideoSummary', 'frame_rate', 'infer_video',
           'is_video_source', 'video_output_path']

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.m4v', '.mpg', '.mpeg', '.webm', '.wmv', '.flv')
# Output containers and the codec written into each: both encode without a display or extra libraries.
FOURCC = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG'}
DEFAULT_FPS = 25.0


def _is_camera(source: str) -> bool:
    """A camera index: digits that name no file or folder here."""
    return str(source).isdigit() and not Path(source).exists()


def is_video_source(source: str) -> bool:
    """A camera index (``'0'``, ``'1'`` ...) or a path with a video suffix, existing or not."""
    return _is_camera(source) or Path(source).suffix.lower() in VIDEO_SUFFIXES


def frame_rate(reported: float, fps: float | None = None) -> float:
    """The output's frame rate: ``fps`` when given, else the source's, else :data:`DEFAULT_FPS` (logged)."""
    if fps is not None:
        if not fps > 0:
            raise ValueError(f'fps must be > 0, got {fps}')
        return float(fps)
    if reported and math.isfinite(reported) and 0 < reported <= 1000:
        return float(reported)
    logger.warning('the source reports no frame rate (%s); writing the output at %g fps (--fps sets it)',
                   reported, DEFAULT_FPS)
    return DEFAULT_FPS


def video_output_path(source: str, output: str | os.PathLike | None, default_dir: str | os.PathLike) -> Path:
    """Where the overlay video of ``source`` goes: ``output`` when it names a video file; else
    ``<stem>_overlay.mp4`` (``camera<N>_overlay.mp4``) in ``output`` (a folder) or ``default_dir``.

    Raises:
        ValueError: an output suffix OpenCV is not asked to write here (see :data:`FOURCC`), or an
            output (or its temporary name) that is the input itself.
    """
    name = f'camera{source}_overlay.mp4' if _is_camera(source) else f'{Path(source).stem}_overlay.mp4'
    if output is None:
        out = Path(default_dir) / name
    else:
        out = Path(output)
        if out.is_dir() or not out.suffix:
            out = out / name
        elif out.suffix.lower() not in FOURCC:
            raise ValueError(f'output {str(out)!r}: a video output must end in one of {", ".join(FOURCC)}')
    if not _is_camera(source):
        src = Path(source).resolve()
        for target in (out, _partial(out)):
            if target.resolve() == src or (target.exists() and src.exists() and os.path.samefile(target, src)):
                raise ValueError(f'output {str(out)!r} would overwrite the input video {str(source)!r}; '
                                 'give another --output')
    return out


def _partial(out: Path) -> Path:
    return out.with_name(f'{out.stem}.partial{out.suffix}')


def _open(source: str) -> cv2.VideoCapture:
    """An opened capture of a camera index or a video file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a camera that does not open, or a file OpenCV cannot read as a video.
    """
    if _is_camera(source):
        capture = cv2.VideoCapture(int(source))
        if not capture.isOpened():
            raise ValueError(f'camera {source} could not be opened (expected the index of a camera OpenCV '
                             'can read, or a video file)')
        return capture
    if not Path(source).is_file():
        raise FileNotFoundError(f'video {str(source)!r} does not exist (expected a video file, '
                                f'{"/".join(VIDEO_SUFFIXES)}, or a camera index)')
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f'cannot read video {str(source)!r}: OpenCV could not open it as a video '
                         f'(expected a video file, {"/".join(VIDEO_SUFFIXES)}, that FFmpeg decodes)')
    return capture


class _FrameReader(threading.Thread):
    """Decodes frames (RGB uint8) into a bounded queue until the capture ends or :attr:`stop` is set."""

    def __init__(self, capture: cv2.VideoCapture, first: np.ndarray, maxsize: int) -> None:
        super().__init__(name='video-reader', daemon=True)
        self.capture, self.first = capture, first
        self.frames: queue.Queue = queue.Queue(maxsize)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        frame = self.first
        try:
            while frame is not None and self._put(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)):
                ok, frame = self.capture.read()
                frame = frame if ok else None
        except BaseException as e:  # handed to the consumer, raised there
            self.error = e
        finally:
            self._put(None)

    def __iter__(self):
        while (frame := self.frames.get()) is not None:
            yield frame
        if self.error is not None:
            raise self.error


@dataclass
class VideoSummary:
    """What a video inference wrote: the output, its frames, size (H, W) and rate, and how fast."""

    output: str
    frames: int
    size: tuple[int, int]
    fps: float
    seconds: float = 0.0
    compile_seconds: float | None = None
    precision: str = ''
    interrupted: bool = False

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def infer_video(ckpt: str | None, source: str, output: str | os.PathLike | None = None, config: str | None = None,
                device: str | None = None, mode: str | None = None, alpha: float = 0.5, batch_size: int = 4,
                precision: str = 'auto', channels_last: bool | str = 'auto', fold_bn: bool = True,
                compile: bool = False, onnx: str | None = None, fps: float | None = None,
                labels_dir: str | os.PathLike | None = None, progress: bool = True) -> VideoSummary:
    """Segment every frame of ``source`` (a video file, or a camera index such as ``'0'``, streamed
    until it ends or Ctrl-C) and write the overlay video, at the source's size and frame rate.

    Args: see :class:`Predictor`; ``output``: the video to write (see :func:`video_output_path`; by
        default ``infer/<stem>_overlay.mp4`` in the folder of the checkpoint, or of the ONNX file);
        ``batch_size`` frames go through the model at once; ``fps`` overrides the source's rate;
        ``labels_dir``: also write each frame's class ids there as ``<frame index:06d>.png``.

    Raises:
        FileNotFoundError: no such video file.
        ValueError: a video OpenCV cannot read (or with no frame), a camera that does not open, an
            output that is the input, or an output suffix not in :data:`FOURCC`.
    """
    # Imported here, not in the writer thread: imports stay in the main thread.
    from seg.visualization.overlay import overlay
    from seg.visualization.palette import colorize

    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    out = video_output_path(source, output, Path(ckpt or onnx or '.').parent / 'infer')
    capture = _open(source)
    try:
        ok, first = capture.read()
        if not ok or first is None:
            raise ValueError(f'cannot read video {str(source)!r}: no frame could be decoded (expected a video '
                             'file OpenCV reads, or a camera that delivers frames)')
        rate = frame_rate(capture.get(cv2.CAP_PROP_FPS), fps)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not _is_camera(source) else 0
        height, width = first.shape[:2]
        ensure_dir(out.parent)
        labels = ensure_dir(labels_dir, 'labels folder') if labels_dir is not None else None
        predictor = Predictor(ckpt, config, device, mode, precision, channels_last, fold_bn, compile, onnx)
    except BaseException:
        capture.release()
        raise
    palette = palette_of(predictor)
    partial = _partial(out)
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*FOURCC[out.suffix.lower()]), rate, (width, height))
    if not writer.isOpened():
        capture.release()
        raise ValueError(f'OpenCV cannot write {str(partial)!r} ({FOURCC[out.suffix.lower()]} codec)')
    summary = VideoSummary(str(out), 0, (height, width), rate,
                           precision=predictor.precision.describe() if predictor.precision else 'onnxruntime')
    reader = _FrameReader(capture, first, 2 * batch_size)

    def write(index: int, frame: np.ndarray, label: np.ndarray) -> None:
        blend = cv2.cvtColor(overlay(frame, colorize(label, palette), alpha), cv2.COLOR_RGB2BGR)
        if blend.shape[:2] != (height, width):  # a stream that changed size: the output keeps the first
            blend = cv2.resize(blend, (width, height), interpolation=cv2.INTER_LINEAR)
        writer.write(blend)
        if labels is not None:
            write_label(output_path(labels, f'{index:06d}.png'), label)
        summary.frames += 1

    completed = False
    start = time.perf_counter()
    reader.start()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, tqdm(total=count or None, desc='video', unit='frame',
                                                             dynamic_ncols=True, disable=not progress) as bar:
            writes: deque = deque()
            batch: list[np.ndarray] = []
            index = 0

            def flush() -> None:
                nonlocal index
                for frame, label in zip(batch, predictor(batch)):
                    writes.append(pool.submit(write, index, frame, label))
                    index += 1
                bar.update(len(batch))
                batch.clear()
                while len(writes) > 4 * batch_size:  # bound what waits for the writer
                    writes.popleft().result()

            try:
                for frame in reader:
                    batch.append(frame)
                    if len(batch) == batch_size:
                        flush()
                if batch:
                    flush()
            except KeyboardInterrupt:
                summary.interrupted = True
                logger.warning('interrupted: keeping the %d frame(s) segmented so far', index)
            finally:
                reader.stop.set()
            for f in writes:
                f.result()
        completed = True
    finally:
        reader.stop.set()
        reader.join(timeout=5)
        capture.release()
        writer.release()
        summary.seconds = time.perf_counter() - start
        if completed and summary.frames:
            os.replace(partial, out)
        elif completed:  # interrupted before the first frame: an earlier output of that name stays
            partial.unlink(missing_ok=True)
        else:
            logger.error('inference failed after %d frame(s); they are kept in %s', summary.frames, partial)
    summary.compile_seconds = predictor.compile_seconds
    return summary
