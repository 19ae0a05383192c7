# OCRNet R-50-D8, Cityscapes 512x1024, 80k iterations, batch 16 (8 GPUs x 2), lr 0.02 decaying to 2e-4
# over the 80k iterations (mmsegmentation's R-101 recipe at depth 50: mmsegmentation publishes no R-50
# OCRNet). mmsegmentation 1.x's file ends the decay at 40k; the published checkpoint was trained by
# 0.x's config, whose poly decay runs over all 80k (see README.md).
_base_ = [
    '../_base_/models/ocrnet_r50-d8.py', '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
total_batch_size = 16
optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [dict(type='PolyLR', eta_min=2e-4, power=0.9, begin=0, end=80000, by_epoch=False)]
