"""Candidates for the default fast path on CPUs without native bf16, side by side in one process.

    python benchmarks/avx2_fast_path.py [--emulate-avx2] [--models fcn ccnet] [--shape 256 512] [--large]
        [--batch-size 2] [--rounds 3] [--calibration 2] [--compile] [--candidates ...]

R-50-D8 Cityscapes configs (backbone plus decode head, whole image, random weights, random input),
eval passes under ``torch.inference_mode`` of ``model.predict`` on a preprocessed batch:

* ``fp32``: today's default on such CPUs (BatchNorm folded, NCHW);
* ``fp32-cl``: the same, channels-last;
* ``int8-backbone``: the backbone quantised (:mod:`seg.engine.quantize`), heads fp32;
* ``int8``: backbone and decode head quantised, attention modules fp32 (the ``'int8'`` precision);
* ``int8-cl``: ``int8`` fed a channels-last input;
* ``compile`` (with ``--compile``): ``torch.compile`` of backbone and head with inductor's weight
  freezing, fp32 (its compile time reported apart).

The passes are interleaved: each round times one pass of every candidate, in rotating order, and the
median over rounds is kept, so load on the machine hits them alike. Calibration here runs on random
images with the guard off (random weights nearly tie their logits, so any rounding flips labels: the
guard is measured on trained models with ``tools/benchmark.py --check-accuracy``); the agreement with
fp32 on the calibration batch is printed all the same, and so is what the cache saves a later run
(the int8 model loaded from a fresh cache folder).

``--emulate-avx2`` re-runs the script with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: ATen's
kernels and oneDNN's (the int8 convolutions run in oneDNN) are capped at AVX2 -- an emulated AVX2
CPU, not a real one (its caches, clocks and cores are this machine's). Prints a markdown table with
the CPU model and flags and whether the caps are set.
"""
import argparse
import copy
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATION = {'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2'}
CANDIDATES = ('fp32', 'fp32-cl', 'int8-backbone', 'int8', 'int8-cl')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--emulate-avx2', action='store_true', help='cap ATen and oneDNN at AVX2 (re-executes)')
    parser.add_argument('--models', nargs='+', default=['fcn', 'ccnet'])
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 512))
    parser.add_argument('--large', action='store_true', help='also 512x1024')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--calibration', type=int, default=2, help='calibration batches (random images)')
    parser.add_argument('--compile', action='store_true', help='add torch.compile(freezing) fp32')
    parser.add_argument('--candidates', nargs='+', choices=CANDIDATES, default=list(CANDIDATES))
    args = parser.parse_args()
    if args.emulate_avx2 and any(os.environ.get(k) != v for k, v in EMULATION.items()):
        env = dict(os.environ, **EMULATION)
        argv = [a for a in sys.argv if a != '--emulate-avx2']
        os.execve(sys.executable, [sys.executable, *argv], env)
    run(args)


def _model(name: str):
    from r50_configs import CONFIGS

    from seg.engine.config import load_config
    from seg.models.fuse import fold_batchnorm
    from seg.registry import MODELS

    cfg = load_config(os.path.join(ROOT, 'configs', CONFIGS[name]))
    cfg.model.auxiliary_head = None
    cfg.model.backbone.pretrained = None
    import torch

    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.test_cfg['mode'] = 'whole'
    fold_batchnorm(model)
    return model


def _inputs(model, batch: int, shape, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = shape
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(batch)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=[dict(img_shape=(h, w), ori_shape=(h, w))
                                                                      for _ in range(batch)]), False)
    return data['inputs'], data['data_samples']


def _candidates(name: str, args, shape, notes: list[str]) -> dict:
    import torch

    from seg.engine import quantize
    from seg.engine.precision import channels_last_model

    base = _model(name)
    calib = [_inputs(base, args.batch_size, shape, seed=100 + i)[0] for i in range(args.calibration)]
    made = {}
    for cand in args.candidates:
        if cand == 'int8-cl' and 'int8' in made:  # the same int8 model, fed channels-last
            made[cand] = made['int8']
            continue
        model = copy.deepcopy(base)
        if cand == 'fp32-cl':
            model = channels_last_model(model)
        elif cand.startswith('int8'):
            parts = ('backbone',) if cand == 'int8-backbone' else quantize.PARTS
            old = quantize.PARTS
            quantize.PARTS = parts
            try:
                report = quantize.quantize_segmentor(model, calib, cache=cand == 'int8', min_agreement=0.0)
                if cand == 'int8':  # what a later run pays: the cached model loaded
                    again = quantize.quantize_segmentor(copy.deepcopy(base), calib, cache=True, min_agreement=0.0)
                    size = os.path.getsize(again.path) / 2**20
                    notes.append(f'{name} {shape[0]}x{shape[1]} int8 from the cache: {again.seconds:.1f} s '
                                 f'(hash the weights, trace, convert, load {size:.0f} MiB)')
            finally:
                quantize.PARTS = old
            notes.append(f'{name} {shape[0]}x{shape[1]} {cand}: calibration + convert + guard on '
                         f'{args.calibration} x {args.batch_size} random images {report.seconds:.1f} s; '
                         f'labels agree with fp32 on {report.agreement:.2%} (random weights); '
                         f'quantised: {", ".join(report.quantized) or "nothing"}'
                         + ''.join(f'; {k} fp32: {v}' for k, v in report.kept_fp32.items()))
        made[cand] = model
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        model = copy.deepcopy(base)
        model.backbone = torch.compile(model.backbone)
        model.decode_head = torch.compile(model.decode_head)
        x, samples = _inputs(base, args.batch_size, shape, seed=0)
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                model.predict(x, samples)
            made['compile'] = model
            notes.append(f'{name} {shape[0]}x{shape[1]} compile: first pass (compilation, freezing) '
                         f'{time.perf_counter() - start:.1f} s')
        except Exception as exc:  # noqa: BLE001 - report, keep the other candidates
            notes.append(f'{name} compile failed after {time.perf_counter() - start:.1f} s: '
                         f'{type(exc).__name__}: {str(exc)[:200]}')
    return made


def run(args) -> None:
    import tempfile

    os.environ['SEG_CACHE_DIR'] = tempfile.mkdtemp(prefix='avx2_fast_path_')  # a cold cache, measured
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
    import torch

    from seg.analysis.measure import cpu_model

    with open('/proc/cpuinfo', encoding='utf-8') as f:
        have = set(next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), []))
    shown = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8')
    flags = ', '.join(f if f in have else f'no {f}' for f in shown)
    caps = {k: os.environ.get(k) for k in EMULATION}
    emulated = all(caps.get(k) == v for k, v in EMULATION.items())
    print(f'CPU: {cpu_model()}, {os.cpu_count()} CPUs, flags: {flags}; torch {torch.__version__} '
          f'({torch.get_num_threads()} threads), quantised engine onednn')
    print(f'ISA caps: {", ".join(f"{k}={v}" for k, v in caps.items() if v) or "none"} -> '
          + ('EMULATED AVX2 (ATen and oneDNN capped; real CPU above)' if emulated else 'native ISA'))
    try:
        print(f'load average at start: {os.getloadavg()}')
    except OSError:
        pass
    shapes = [tuple(args.shape)] + ([(512, 1024)] if args.large and tuple(args.shape) != (512, 1024) else [])
    rows, notes = [], []
    for shape in shapes:
        for name in args.models:
            made = _candidates(name, args, shape, notes)
            x, samples = _inputs(next(iter(made.values())), args.batch_size, shape, seed=0)
            inputs = {c: x.contiguous(memory_format=torch.channels_last) if c.endswith('-cl') else x for c in made}
            times = {c: [] for c in made}
            order = list(made)
            with torch.inference_mode():
                for c in order:  # one untimed pass each
                    made[c].predict(inputs[c], samples)
                for r in range(args.rounds):
                    for c in order[r % len(order):] + order[:r % len(order)]:
                        start = time.perf_counter()
                        made[c].predict(inputs[c], samples)
                        times[c].append(time.perf_counter() - start)
                        print(f'  {name} {shape} {c}: {times[c][-1]:.3f} s', file=sys.stderr, flush=True)
            med = {c: statistics.median(t) for c, t in times.items()}
            rows.append((name, shape, med))
    cands = list(rows[0][2])
    print(f'\nR-50-D8 eval, batch {args.batch_size}, backbone + decode head, whole image, median s/pass of '
          f'{args.rounds} interleaved rounds after one untimed pass\n')
    print('| model | input | ' + ' | '.join(cands) + ' | ' + ' | '.join(f'{c} / fp32' for c in cands[1:]) + ' |')
    print('|---|---|' + '---|' * (2 * len(cands) - 1))
    for name, shape, med in rows:
        print(f'| {name} | {shape[0]}x{shape[1]} | ' + ' | '.join(f'{med[c]:.3f} s' for c in cands) + ' | '
              + ' | '.join(f'{med[c] / med["fp32"]:.2f}' for c in cands[1:]) + ' |')
    print()
    for note in notes:
        print(f'- {note}')
    try:
        print(f'load average at end: {os.getloadavg()}')
    except OSError:
        pass


if __name__ == '__main__':
    main()
