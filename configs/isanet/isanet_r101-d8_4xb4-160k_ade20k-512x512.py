# ISANet R-101-D8, ADE20K 512x512, 160k iterations (mmsegmentation recipe).
_base_ = './isanet_r50-d8_4xb4-160k_ade20k-512x512.py'
model = dict(backbone=dict(depth=101, pretrained='open-mmlab://resnet101_v1c'))
