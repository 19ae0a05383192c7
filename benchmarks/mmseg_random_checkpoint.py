"""An mmsegmentation checkpoint of a config with mmseg's own random initialisation, for the accuracy guard.

Runs in the mmseg venv (see benchmarks/mmseg_peer.py)::

    /tmp/mmseg-venv/bin/python benchmarks/mmseg_random_checkpoint.py \
        ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py /tmp/mmseg_ccnet_r50.pth
    python tools/convert_checkpoint.py --from mmseg /tmp/mmseg_ccnet_r50.pth /tmp/ccnet_r50.pth \
        --config configs/ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py
    python tools/benchmark.py configs/ccnet/ccnet_r50-d8_4xb2-40k_cityscapes-512x1024.py \
        --ckpt /tmp/ccnet_r50.pth --shape 256 512 --check-accuracy 8 --iters 1 --repeat 1

No trained R-50 weights can be downloaded here, so the model is mmseg's ``init_weights`` (Kaiming
convolutions, attention gammas at 0, which the script sets to 0.5 so the attention counts) with its
BatchNorm statistics calibrated: a cumulative average over ``--calib`` train-mode forwards of random
images, so that every layer sees normalised activations as in a trained network. Written as
``{'state_dict', 'meta'}`` like mmsegmentation's released checkpoints.
"""
import argparse
import os

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help="a name relative to mmseg's configs, or a path")
    parser.add_argument('out')
    parser.add_argument('--calib', type=int, default=8, help='train-mode forwards that set the BN statistics')
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 512))
    args = parser.parse_args()
    import mmseg
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    init_default_scope('mmseg')
    path = args.config if os.path.isfile(args.config) else os.path.join(
        os.path.dirname(mmseg.__file__), '.mim', 'configs', args.config)
    cfg = Config.fromfile(path)
    cfg.model.pretrained = None
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        if cfg.model.get(part) is not None and 'norm_cfg' in cfg.model[part]:
            cfg.model[part].norm_cfg = dict(type='BN', requires_grad=True)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(('gamma', 'gamma.scale')):
                p.fill_(0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average
        model.train()
        g = torch.Generator().manual_seed(1)
        mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
        std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
        for _ in range(args.calib):
            x = (torch.randint(0, 256, (2, 3, *args.shape), generator=g).float() - mean) / std
            model._forward(x)  # backbone + decode head (the auxiliary head is not used in eval)
    torch.save({'state_dict': model.state_dict(), 'meta': {'mmseg_version': mmseg.__version__,
                                                           'note': 'random init, calibrated BN'}}, args.out)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
