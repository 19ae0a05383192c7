# Runtime shared by every config: mmengine Runner settings, logging, checkpoints.
default_scope = 'seg'
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
# bf16 autocast and channels-last where the hardware runs them natively (seg/engine/precision.py); 'fp32' to
# train in full precision. tools/train.py --precision overrides it.
precision = 'auto'
channels_last = 'auto'
custom_hooks = [dict(type='ValProgressBarHook')]
