# The CPU demo: CCNet (R=2) on a small dilated ResNet-18 (output stride 8), trained from scratch on
# the embedded synthetic street scenes. `python tools/demo.py` runs it end to end.
_base_ = ['_base_/datasets/synthetic.py', '_base_/default_runtime.py']
num_classes = 9
model = dict(
    type='EncoderDecoder',
    num_classes=num_classes,
    data_preprocessor=dict(type='SegDataPreprocessor'),
    backbone=dict(type='DilatedResNet', depth=18, deep_stem=True, output_stride=8,
                  channels=(16, 32, 64, 128), norm='BN', pretrained=None),
    decode_head=dict(type='CCHead', in_channels=128, channels=32, num_classes=num_classes, recurrence=2,
                     in_index=3, dropout=0.1, norm='BN'),
    auxiliary_head=dict(type='FCNHead', in_channels=64, channels=32, num_classes=num_classes, num_convs=1,
                        concat_input=False, in_index=2, dropout=0.1, norm='BN'),
    loss_weights=dict(out=1.0, aux=0.4),
    test_cfg=dict(mode='whole'),
)
max_iters = 1000
# Batches are made in the training process: on a 2-core CPU two loader workers compete with the training step's
# threads (200 iterations on an Intel Xeon without bf16: 0.21-0.26 s each in-process, 0.26-0.40 s with 2 workers).
train_dataloader = dict(num_workers=0, persistent_workers=False)
# From scratch on CPU, AdamW converges in far fewer steps than the GPU recipe's SGD.
optim_wrapper = dict(type='SegOptimWrapper', optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.0001))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='SegTrainLoop', max_iters=max_iters, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=1,
                    save_best='mIoU', rule='greater'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
# The demo's fast default: bf16 + channels-last where the CPU has native bf16 (AVX512-BF16, AMX), else fp32.
precision = 'auto'
