# DeepLabV3 R-50-D8, Cityscapes 512x1024, 80k iterations (mmsegmentation recipe).
_base_ = [
    '../_base_/models/deeplabv3_r50-d8.py', '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py',
]
