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
# Converted to torch.nn.SyncBatchNorm when training with several GPU processes (DDP).
sync_bn = 'torch'
randomness = dict(seed=0)
custom_hooks = [dict(type='ValProgressBarHook')]
