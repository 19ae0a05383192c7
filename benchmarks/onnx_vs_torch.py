"""onnxruntime against PyTorch on CPU, per head, side by side in one run.

    python benchmarks/onnx_vs_torch.py [--heads fcn ccnet danet nonlocal] [--shape 256 512] [--iters 3]

For each R-50-D8 Cityscapes config: random weights (seed 0) saved as a checkpoint, exported with
``tools/export_onnx.py``'s function (static shape), then the logits of one (1, 3, H, W) input timed
(median of ``--iters`` passes after one warm-up) in onnxruntime's CPU provider, in PyTorch fp32
(``init_model``: what was trained, ``torch.inference_mode``), and in PyTorch with the default fast
settings of ``tools/infer.py`` (BatchNorm folded, bf16 + channels-last where the CPU has native
bf16). Prints the export time, the three latencies, onnxruntime's max |logit difference| to PyTorch
fp32, and the largest |logit| (the scale that difference is to be read against).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from r50_configs import CONFIGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_time(fn, iters: int) -> float:
    fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--heads', nargs='+', choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 512))
    parser.add_argument('--iters', type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    import onnxruntime as ort

    from seg.analysis.measure import environment

    env = environment('cpu')
    h, w = args.shape
    print(f"torch {env['torch']}, onnxruntime {ort.__version__}, {env['cpu']}, {env['threads']} threads; "
          f"R-50-D8, random weights, input 1x3x{h}x{w}, median of {args.iters} passes\n")
    print('| head | export s | onnxruntime | PyTorch fp32 | PyTorch default | ORT / fp32 | max abs diff | max abs logit |')
    print('|---|---|---|---|---|---|---|---|')
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        for head in args.heads:
            print(measure_head(head, x, tmp, args.iters), flush=True)


def measure_head(head: str, x: torch.Tensor, tmp: str, iters: int) -> str:
    """One table row: export, then onnxruntime / PyTorch fp32 / PyTorch default on ``x``."""
    import onnxruntime as ort

    from seg.apis.export import export_onnx
    from seg.apis.inference import fast_model, init_model
    from seg.apis.model_io import build_model
    from seg.engine.config import load_config
    from seg.engine.config_data import config_to_data
    from seg.engine.precision import resolve_precision

    cfg = load_config(os.path.join(ROOT, 'configs', CONFIGS[head]))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ckpt = os.path.join(tmp, f'{head}.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': config_to_data(cfg)}}, ckpt)
    start = time.perf_counter()
    onnx_path = export_onnx(ckpt, os.path.join(tmp, f'{head}.onnx'), shape=tuple(x.shape[-2:]))
    export_s = time.perf_counter() - start
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    feed = {'input': x.numpy()}
    ort_s = median_time(lambda: session.run(None, feed), iters)
    ref = init_model(ckpt)
    with torch.inference_mode():
        fp32_s = median_time(lambda: ref(x, mode='tensor'), iters)
        expected = ref(x, mode='tensor').numpy()
    precision = resolve_precision('auto', 'cpu')
    fast = fast_model(init_model(ckpt), precision)
    xf = x.contiguous(memory_format=torch.channels_last) if precision.channels_last else x
    with torch.inference_mode():
        fast_s = median_time(lambda: fast(xf, mode='tensor'), iters)
    diff = abs(session.run(None, feed)[0] - expected).max()
    return (f'| {head} | {export_s:.1f} | {ort_s:.3f} s | {fp32_s:.3f} s | {fast_s:.3f} s ({precision.name}) | '
            f'{ort_s / fp32_s:.2f} | {diff:.1e} | {abs(expected).max():.1e} |')

if __name__ == '__main__':
    main()
