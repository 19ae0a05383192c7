# OCRNet R-50-D8, Cityscapes 512x1024, 40k iterations (mmsegmentation's R-101 recipe at depth 50:
# mmsegmentation publishes no R-50 OCRNet).
_base_ = [
    '../_base_/models/ocrnet_r50-d8.py', '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py',
]
