# OCRNet R-50-D8, Cityscapes 512x1024, 40k iterations, batch 16 (8 GPUs x 2), lr 0.02 decaying to 2e-4
# (mmsegmentation's R-101 recipe at depth 50: mmsegmentation publishes no R-50 OCRNet).
_base_ = './ocrnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'
total_batch_size = 16
optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [dict(type='PolyLR', eta_min=2e-4, power=0.9, begin=0, end=40000, by_epoch=False)]
