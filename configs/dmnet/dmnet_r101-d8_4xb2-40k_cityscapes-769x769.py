# DMNet R-101-D8, Cityscapes 769x769, 40k iterations (mmsegmentation recipe).
_base_ = './dmnet_r50-d8_4xb2-40k_cityscapes-769x769.py'
model = dict(backbone=dict(depth=101, pretrained='open-mmlab://resnet101_v1c'))
