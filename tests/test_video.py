"""Video inference (tools/infer.py --input clip.mp4): a 12-frame 64x96 clip in, an overlay video out at
the source's size and frame rate, each frame segmented as image inference segments it."""
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from seg.apis.model_io import build_model
from seg.engine.config import load_config

from .conftest import ROOT, randomize

FRAMES, HEIGHT, WIDTH, FPS = 12, 64, 96, 7.5


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory) -> str:
    """The demo network at widths (8, 8, 16, 16), random weights, saved as a checkpoint with its config."""
    cfg = load_config(os.path.join(ROOT, 'configs', 'demo_ccnet.py'))
    cfg.model.backbone.channels = (8, 8, 16, 16)
    cfg.model.decode_head = dict(cfg.model.decode_head, in_channels=16, channels=8)
    cfg.model.auxiliary_head = dict(cfg.model.auxiliary_head, in_channels=16, channels=8)
    model = randomize(build_model(cfg)).eval()
    path = tmp_path_factory.mktemp('video_ckpt') / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': cfg.to_dict(), 'dataset_meta': dict(
        classes=[f'c{i}' for i in range(9)], palette=[[i * 28, 255 - i * 28, (i * 90) % 256] for i in range(9)])}},
        path)
    return str(path)


def write_clip(path, frames=FRAMES, fps=FPS, fourcc='MJPG') -> None:
    """Moving colour blocks over noise: neighbouring frames differ, so frame order shows."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(frames):
        frame = rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[8:40, 4 + 6 * i:36 + 6 * i] = (40, 200, 90)
        frame[36:60, 60 - 3 * i:90 - 3 * i] = (230, 60, 30)
        writer.write(frame)
    writer.release()


def read_frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_video_writes_every_frame_at_the_source_size_and_rate_as_image_inference_segments_it(ckpt, tmp_path):
    from seg.apis import infer_paths
    from seg.apis.video import infer_video

    clip = tmp_path / 'clip.avi'
    write_clip(clip)
    out = tmp_path / 'out' / 'clip_seg.mp4'
    summary = infer_video(ckpt, str(clip), out, batch_size=4, precision='fp32', labels_dir=tmp_path / 'labels',
                          progress=False)
    assert summary.output == str(out) and summary.frames == FRAMES and not summary.interrupted
    assert sorted(p.name for p in out.parent.iterdir()) == ['clip_seg.mp4']  # the temporary name is gone
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    capture.release()
    written = read_frames(out)
    assert len(written) == FRAMES and all(f.shape == (HEIGHT, WIDTH, 3) for f in written)

    # Image inference on the same decoded frames (lossless PNGs), batched alike.
    decoded = read_frames(clip)
    images = tmp_path / 'frames'
    images.mkdir()
    for i, frame in enumerate(decoded):
        cv2.imwrite(str(images / f'{i:06d}.png'), frame)
    infer_paths(ckpt, str(images), str(tmp_path / 'image_out'), batch_size=4, num_workers=0, precision='fp32',
                progress=False)
    for i in range(FRAMES):
        got = cv2.imread(str(tmp_path / 'labels' / f'{i:06d}.png'), cv2.IMREAD_UNCHANGED)
        expected = cv2.imread(str(tmp_path / 'image_out' / f'{i:06d}_label.png'), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(got, expected), f'frame {i}: labels differ from image inference'
        # The overlay, up to the mp4v codec's loss (mean |diff| about 6 on this noise); another frame's is ~29 away.
        overlay = cv2.imread(str(tmp_path / 'image_out' / f'{i:06d}_overlay.png')).astype(np.float32)
        err = np.abs(written[i].astype(np.float32) - overlay).mean()
        other = np.abs(written[(i + 6) % FRAMES].astype(np.float32) - overlay).mean()
        assert err < 10 and err < other / 3, f'frame {i}: mean |diff| {err:.1f} (another frame: {other:.1f})'
    assert len(set(np.unique(np.stack([cv2.imread(str(tmp_path / 'labels' / f'{i:06d}.png'), 0)
                                       for i in range(FRAMES)])))) > 1  # the check above compared something


@pytest.mark.slow  # a subprocess: importing torch and seg again
def test_the_tool_writes_the_default_output_beside_the_checkpoint(ckpt, tmp_path):
    clip = tmp_path / 'walk.mp4'
    write_clip(clip, frames=5, fps=12, fourcc='mp4v')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, 'tools/infer.py', '--ckpt', ckpt, '--input', str(clip), '--batch-size', '2'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = os.path.join(os.path.dirname(ckpt), 'infer', 'walk_overlay.mp4')
    assert f'wrote 5 frame(s) of {WIDTH}x{HEIGHT} at 12 fps to {out}' in proc.stdout
    assert len(read_frames(out)) == 5 and cv2.VideoCapture(out).get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    assert '5/5' in proc.stderr  # the progress bar knows the frame count


def test_missing_unreadable_and_self_overwriting_videos_are_refused(ckpt, tmp_path):
    from seg.apis.video import infer_video, video_output_path

    with pytest.raises(FileNotFoundError, match=r"video '.*nope\.mp4' does not exist \(expected a video file"):
        infer_video(ckpt, str(tmp_path / 'nope.mp4'), tmp_path / 'o.mp4', progress=False)
    bad = tmp_path / 'bad.mp4'
    bad.write_bytes(b'not a video' * 10)
    with pytest.raises(ValueError, match=r"cannot read video '.*bad\.mp4'"):
        infer_video(ckpt, str(bad), tmp_path / 'o.mp4', progress=False)
    clip = tmp_path / 'clip.avi'
    write_clip(clip, frames=2)
    before = clip.read_bytes()
    for output in (clip, tmp_path / '.' / 'clip.avi'):
        with pytest.raises(ValueError, match='would overwrite the input video'):
            infer_video(ckpt, str(clip), output, progress=False)
    partial = tmp_path / 'x.partial.avi'
    partial.write_bytes(before)
    with pytest.raises(ValueError, match='would overwrite the input video'):  # nor through its temporary name
        video_output_path(str(partial), tmp_path / 'x.avi', tmp_path)
    with pytest.raises(ValueError, match=r'must end in one of \.mp4'):
        video_output_path(str(clip), tmp_path / 'o.png', tmp_path)
    assert clip.read_bytes() == before and not (tmp_path / 'o.mp4').exists()
    assert video_output_path(str(clip), tmp_path, '.') == tmp_path / 'clip_overlay.mp4'
    assert video_output_path('0', None, tmp_path) == tmp_path / 'camera0_overlay.mp4'


def test_a_source_without_a_frame_rate_gets_the_default_and_the_log_says_so(caplog):
    from seg.apis.video import DEFAULT_FPS, frame_rate

    assert frame_rate(29.97) == 29.97 and frame_rate(0.0, fps=10) == 10
    with caplog.at_level(logging.WARNING, logger='seg.apis.video'):
        assert frame_rate(0.0) == DEFAULT_FPS and frame_rate(float('nan')) == DEFAULT_FPS
    assert f'writing the output at {DEFAULT_FPS:g} fps' in caplog.text
    with pytest.raises(ValueError, match='fps must be > 0'):
        frame_rate(25.0, fps=0)


@pytest.mark.parametrize('stop', [KeyboardInterrupt, RuntimeError])
def test_ctrl_c_keeps_the_frames_written_and_an_error_leaves_them_under_the_temporary_name(ckpt, tmp_path,
                                                                                           monkeypatch, stop):
    from seg.apis import predictor as predictor_module
    from seg.apis.video import infer_video

    clip = tmp_path / 'clip.avi'
    write_clip(clip)
    out = tmp_path / 'clip_seg.avi'
    out.write_bytes(b'an earlier output')
    calls = []
    real = predictor_module.Predictor.__call__

    def second_batch_stops(self, images):
        calls.append(len(images))
        if len(calls) == 2:
            raise stop('stop')
        return real(self, images)

    monkeypatch.setattr(predictor_module.Predictor, '__call__', second_batch_stops)
    if stop is KeyboardInterrupt:
        summary = infer_video(ckpt, str(clip), out, batch_size=4, progress=False)
        assert summary.interrupted and summary.frames == 4
        assert len(read_frames(out)) == 4 and not (tmp_path / 'clip_seg.partial.avi').exists()
    else:
        with pytest.raises(RuntimeError):
            infer_video(ckpt, str(clip), out, batch_size=4, progress=False)
        assert out.read_bytes() == b'an earlier output'
        assert len(read_frames(tmp_path / 'clip_seg.partial.avi')) == 4
