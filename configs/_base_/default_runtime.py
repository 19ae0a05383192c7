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
# The published recipes train in fp32 (mmsegmentation's numbers are fp32), so a GPU run of a recipe is fp32
# unless asked otherwise: --precision auto (bf16 + channels-last where the hardware runs them natively,
# seg/engine/precision.py), bf16 or fp16. The CPU demo sets 'auto' (configs/demo_ccnet.py).
precision = 'fp32'
channels_last = 'auto'
custom_hooks = [dict(type='ValProgressBarHook')]
