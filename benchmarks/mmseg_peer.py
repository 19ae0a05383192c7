"""mmsegmentation's side of the side-by-side benchmark (``benchmarks/vs_mmseg.py``).

Runs in a separate virtual environment that has mmsegmentation 1.2.2 -- never in seg's, and seg
never imports it::

    python -m venv /tmp/mmseg-venv
    /tmp/mmseg-venv/bin/pip install torch==2.14.1 mmcv-lite==2.1.0 mmsegmentation==1.2.2 mmengine ftfy regex
    # + a stub mmcv/_ext.py whose module __getattr__ returns a function that raises

    /tmp/mmseg-venv/bin/python benchmarks/mmseg_peer.py ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py \
        --mode eval --shape 256 512 --batch-size 2 --precision fp32

It times what seg's ``tools/benchmark.py`` times, on mmsegmentation's own model of the config (from
the configs shipped inside the mmseg package, random weights, BN instead of SyncBN on one process):
eval is ``model.test_step`` (preprocessing, whole-image predict, resize and argmax) under
``torch.no_grad``; train is ``model.train_step`` with the config's SGD (preprocessing, forward, losses,
backward, step). ``--precision bf16`` runs both under ``torch.autocast(dtype=torch.bfloat16)``
(mmengine's AmpOptimWrapper refuses a CPU). The last line is ``median_s=<seconds per pass>``.

``--no-aux`` drops the auxiliary head (backbone plus decode head). ``--mode memory`` runs one eval pass
and prints ``peak_bytes=<bytes>``: the peak tensor memory of the pass plus the model's weights, measured
by seg's own :func:`seg.analysis.measure.peak_memory` (loaded from its file, which needs only torch), as
``tools/benchmark.py`` measures seg's side. PSANet needs mmcv's compiled PSAMask, which mmcv-lite lacks:
it cannot run here.
"""
import argparse
import os
import statistics
import time
from contextlib import contextmanager

import torch


def build(config: str, shape, aux: bool = True, depth: int | None = None):
    import mmseg
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    init_default_scope('mmseg')
    path = config if os.path.isfile(config) else os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs',
                                                              config)
    cfg = Config.fromfile(path)
    cfg.model.pretrained = None
    if depth is not None:  # e.g. OCRNet, published on R-101 only, at depth 50
        cfg.model.backbone.depth = depth
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        sub = cfg.model.get(part)
        for item in (sub if isinstance(sub, list) else [sub]):
            if item is not None and 'norm_cfg' in item:
                item.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.data_preprocessor.size = tuple(shape)
    cfg.model.test_cfg = dict(mode='whole')
    if not aux:
        cfg.model.auxiliary_head = None
    torch.manual_seed(0)
    return MODELS.build(cfg.model), cfg


def batch(n: int, shape, num_classes: int):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    g = torch.Generator().manual_seed(0)
    h, w = shape
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help="path, or a name relative to mmseg's configs")
    parser.add_argument('--mode', choices=['eval', 'train', 'memory'], default='eval')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 1024))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--no-aux', action='store_true', help='drop the auxiliary head')
    parser.add_argument('--depth', type=int, help="the backbone's depth instead of the config's")
    args = parser.parse_args()
    from mmengine.optim import OptimWrapper

    model, cfg = build(args.config, args.shape, aux=not args.no_aux, depth=args.depth)
    heads = cfg.model.decode_head  # a list for a cascade (OCRNet)
    data = batch(args.batch_size, args.shape, (heads[-1] if isinstance(heads, list) else heads).num_classes)
    low = args.precision == 'bf16'
    cast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if low else (lambda: torch.autocast('cpu',
                                                                                                   enabled=False))

    class AutocastWrapper(OptimWrapper):
        @contextmanager
        def optim_context(self, model):
            with super().optim_context(model), cast():
                yield

    if args.mode == 'memory':
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'seg', 'analysis',
                            'measure.py')
        spec = importlib.util.spec_from_file_location('seg_measure', path)
        measure = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(measure)
        model.eval()
        with torch.no_grad():
            _, peak = measure.peak_memory(lambda: model.test_step(data), 'cpu',
                                          [*model.parameters(), *model.buffers()])
        print(f'mmsegmentation {args.config} eval pass, batch {args.batch_size}, {args.shape}')
        print(f'peak_bytes={peak}')
        return
    if args.mode == 'eval':
        model.eval()

        def step():
            with torch.no_grad(), cast():
                model.test_step(data)
    else:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
        wrapper = AutocastWrapper(optimizer)

        def step():
            model.train_step(data, wrapper)
    step()
    times = []
    for _ in range(args.repeat):
        for _ in range(args.warmup):
            step()
        for _ in range(args.iters):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    print(f'mmsegmentation {args.config} {args.mode} {args.precision}: {len(times)} passes')
    print(f'median_s={statistics.median(times):.6f}')


if __name__ == '__main__':
    main()
