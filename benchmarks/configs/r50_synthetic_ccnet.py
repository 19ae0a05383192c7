# R-50-D8 CCNet on the synthetic scenes: a trained R-50 for the accuracy guard (docs/benchmarks.md), since
# no published weights can be downloaded on the development machines.
#   python tools/train.py benchmarks/configs/r50_synthetic_ccnet.py --cfg-options train_dataloader.batch_size=4
#   python tools/benchmark.py benchmarks/configs/r50_synthetic_ccnet.py --ckpt CKPT --shape 96 192 --check-accuracy 100
_base_ = ['../../configs/demo_ccnet.py']
model = dict(backbone=dict(depth=50, channels=(64, 128, 256, 512)),
             decode_head=dict(in_channels=2048, channels=512), auxiliary_head=dict(in_channels=1024, channels=256))
max_iters = 300
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=300)
default_hooks = dict(checkpoint=dict(interval=300))
work_dir = 'work_dirs/r50_synthetic_ccnet'
