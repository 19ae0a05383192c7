# ISANet R-101-D8, Cityscapes 512x1024, 80k iterations (mmsegmentation recipe).
_base_ = './isanet_r50-d8_4xb2-80k_cityscapes-512x1024.py'
model = dict(backbone=dict(depth=101, pretrained='open-mmlab://resnet101_v1c'))
